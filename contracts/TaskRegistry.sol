// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TaskRegistry: WebAssembly tasks in, their results out (issue 13)
/// @notice Anyone submits a task (module CID, input CID, entry) and gets the next id: 1, 2,
/// 3, … The task itself lives only in its `TaskSubmitted` event, which coordinators read;
/// the contract stores no more of it than the count. An executor, an account the owner
/// allowed, posts each task's result once; `resultOf` and `ResultPosted` tell it.
/// @dev The owner is the deployer, for good (there is no transfer). The deployer is NOT an
/// executor until it calls `setExecutor(deployer, true)` like any other account.
/// Result status codes, as the runner reports them: 0 ok, 1 trap, 2 out_of_fuel,
/// 3 timeout, 4 invalid_module, 5 invalid_input, 6 fetch_failed, 7 error, 8 nondeterministic
/// (a second run gave another output).
contract TaskRegistry {
    /// @notice The highest status code `postResult` accepts (8, nondeterministic).
    uint8 public constant MAX_STATUS = 8;

    /// @notice The account that deployed the contract: the only one that may call `setExecutor`.
    /// @dev Never written after the constructor. A storage slot, not an immutable, so the code on
    /// chain is exactly the artifact's deployedBytecode, whoever deployed it.
    address public owner;

    /// @notice How many tasks were submitted: the id of the last one (0 before the first).
    uint256 public taskCount;

    struct TaskResult {
        bool posted;
        uint8 status;
        address executor;
        bytes32 resultHash;
        string result;
    }

    mapping(address account => bool allowed) private executors;
    mapping(uint256 taskId => TaskResult) private results;

    /// @notice Task `taskId` was submitted by `requester`: run `entry` of the module `wasmCid`
    /// on the input `inputCid` (either of the latter two may be empty).
    event TaskSubmitted(uint256 indexed taskId, address indexed requester, string wasmCid, string inputCid, string entry);

    /// @notice `executor` posted task `taskId`'s result: its status code, the hash of the
    /// whole result object and the result (as the executor chose to encode it).
    event ResultPosted(uint256 indexed taskId, address indexed executor, uint8 status, bytes32 resultHash, string result);

    /// @notice The owner allowed (`allowed` true) or stopped (`allowed` false) `executor`.
    event ExecutorSet(address indexed executor, bool allowed);

    /// @notice `taskId` is 0 or above `taskCount`: no task was submitted with that id.
    error UnknownTask(uint256 taskId);

    /// @notice `account` may not post results: the owner has not made it an executor.
    error NotExecutor(address account);

    /// @notice Task `taskId` already has a result, posted by `executor`; a result is final.
    error AlreadyPosted(uint256 taskId, address executor);

    /// @notice `account` is not the owner, and only the owner may set executors.
    error NotOwner(address account);

    /// @notice `status` is not a status code (0 to `MAX_STATUS`).
    error InvalidStatus(uint8 status);

    constructor() {
        owner = msg.sender;
    }

    /// @notice Submits a task; its id is the next of 1, 2, 3, … and is announced in `TaskSubmitted`.
    /// @dev Never reverts on its arguments: checking CIDs and entries is the coordinator's.
    /// @param wasmCid the module's CID
    /// @param inputCid the JSON input's CID, or empty
    /// @param entry the exported function to run, or empty for the runner's default
    /// @return taskId the new task's id
    function submitTask(string calldata wasmCid, string calldata inputCid, string calldata entry)
        external
        returns (uint256 taskId)
    {
        taskId = ++taskCount;
        emit TaskSubmitted(taskId, msg.sender, wasmCid, inputCid, entry);
    }

    /// @notice Posts task `taskId`'s result, once, as an executor.
    /// @dev Checked in this order: `NotExecutor(msg.sender)` when the sender is not an executor;
    /// `UnknownTask(taskId)` when no task has that id; `AlreadyPosted(taskId, executor)` when
    /// the task has a result; `InvalidStatus(status)` when `status` > `MAX_STATUS`.
    /// @param taskId the task's id
    /// @param status the status code (see the contract's notes)
    /// @param resultHash the hash of the whole result object
    /// @param result the result, as the executor encodes it
    function postResult(uint256 taskId, uint8 status, bytes32 resultHash, string calldata result) external {
        if (!executors[msg.sender]) revert NotExecutor(msg.sender);
        if (taskId == 0 || taskId > taskCount) revert UnknownTask(taskId);
        TaskResult storage slot = results[taskId];
        if (slot.posted) revert AlreadyPosted(taskId, slot.executor);
        if (status > MAX_STATUS) revert InvalidStatus(status);

        slot.posted = true;
        slot.status = status;
        slot.executor = msg.sender;
        slot.resultHash = resultHash;
        slot.result = result;
        emit ResultPosted(taskId, msg.sender, status, resultHash, result);
    }

    /// @notice Task `taskId`'s result: `posted` false (and the rest zero) while it has none,
    /// including for an id no task has.
    /// @param taskId the task's id
    /// @return posted whether a result was posted
    /// @return status its status code
    /// @return resultHash the hash of the whole result object
    /// @return result the result
    /// @return executor the executor that posted it
    function resultOf(uint256 taskId)
        external
        view
        returns (bool posted, uint8 status, bytes32 resultHash, string memory result, address executor)
    {
        TaskResult storage slot = results[taskId];
        return (slot.posted, slot.status, slot.resultHash, slot.result, slot.executor);
    }

    /// @notice Allows (`allowed` true) or stops (`allowed` false) `executor` posting results.
    /// @dev Owner only: reverts `NotOwner(msg.sender)` otherwise. Emits `ExecutorSet` every time.
    /// @param executor the account
    /// @param allowed whether it may post results
    function setExecutor(address executor, bool allowed) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        executors[executor] = allowed;
        emit ExecutorSet(executor, allowed);
    }

    /// @notice Whether `account` may post results.
    /// @param account the account
    /// @return whether it is an executor
    function isExecutor(address account) external view returns (bool) {
        return executors[account];
    }
}
