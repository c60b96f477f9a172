"""Runs a WASI preview1 command under wasmtime (the PyPI package), with the flags of
`runner --plain`, so the two can be compared on the same program: the reference for the
runner's differential test and benchmark (scripts/ensure-wasmtime.sh installs it).

    python wasmtime-wasi.py [--dir HOST::GUEST] [--dir-rw HOST::GUEST] [--env K=V] MODULE [ARGS]...

stdin, stdout and stderr are inherited; the exit code is the guest's (134 after a trap
or another error that ends the guest).
"""

import sys

import wasmtime


def split_dir(spec: str) -> tuple[str, str]:
    host, sep, guest = spec.partition("::")
    return host, guest if sep else host


def main(argv: list[str]) -> int:
    dirs: list[tuple[str, str, bool]] = []
    env: list[tuple[str, str]] = []
    rest = list(argv)
    while rest and rest[0].startswith("--"):
        flag = rest.pop(0)
        if not rest:
            print(f"wasmtime-wasi: {flag} needs a value", file=sys.stderr)
            return 2
        value = rest.pop(0)
        if flag in ("--dir", "--dir-rw"):
            host, guest = split_dir(value)
            dirs.append((host, guest, flag == "--dir-rw"))
        elif flag == "--env":
            key, _, val = value.partition("=")
            env.append((key, val))
        else:
            print(f"wasmtime-wasi: unknown flag {flag}", file=sys.stderr)
            return 2
    if not rest:
        print(__doc__, file=sys.stderr)
        return 2
    module_path, args = rest[0], rest[1:]

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, module_path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [module_path, *args]
    wasi.env = env
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    for host, guest, writable in dirs:
        wasi.preopen_dir(host, guest, writable)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    except wasmtime.WasmtimeError as error:
        # A trap, or an error that ends the guest as one (proc_exit with a status of 126
        # or more): the runner answers both with 134.
        print(f"wasmtime-wasi: {error}", file=sys.stderr)
        return 134
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
