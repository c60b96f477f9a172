//! The discovery documents a client such as `kubectl` reads before anything else, to map a
//! kind or a short name (`wt`) to a resource path: `/api` (APIVersions), `/apis`
//! (APIGroupList), `/apis/{group}` (APIGroup) and `/api/v1`, `/apis/{group}/{version}`
//! (APIResourceList), for the built-in resources served and for every stored CRD's served
//! versions. Pure: the store in, documents out.
//!
//! Also a skeleton of the OpenAPI v3 documents (`/openapi/v3`): the PATCH operations with
//! their `fieldValidation` parameter, which is what `kubectl apply` checks before it leaves
//! validation to the server.
//!
//! Simplified: only the legacy (unaggregated) discovery form; a client asking for aggregated
//! discovery (`as=APIGroupDiscoveryList`) gets it and falls back, as it does with older
//! servers. No `deletecollection` verb (not served), no `storageVersionHash`, no `scale`
//! subresource, no schemas in the OpenAPI documents and no `/openapi/v2` (404).

use serde_json::{json, Value};

use super::store::{Res, Selector, Store};

const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const SUBRESOURCE_VERBS: [&str; 3] = ["get", "patch", "update"];

/// How discovery describes a built-in resource: (singular, short names, categories,
/// subresources with their verbs).
type BuiltIn = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [(&'static str, &'static [&'static str])],
);

fn built_in(res: Res) -> BuiltIn {
    const STATUS: (&str, &[&str]) = ("status", &SUBRESOURCE_VERBS);
    match res {
        Res::Jobs => ("job", &[], &["all"], &[STATUS]),
        Res::Pods => ("pod", &["po"], &["all"], &[STATUS, ("log", &["get"])]),
        Res::Leases => ("lease", &[], &[], &[]),
        Res::ConfigMaps => ("configmap", &["cm"], &[], &[]),
        Res::CoreEvents | Res::Events => ("event", &["ev"], &[], &[]),
        Res::Crds => (
            "customresourcedefinition",
            &["crd", "crds"],
            &["api-extensions"],
            &[],
        ),
        Res::Custom(_) => ("", &[], &[], &[]),
    }
}

/// `/api`: the core group's versions.
pub(super) fn core_versions(host: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    })
}

/// Sorts versions as Kubernetes does: GA before beta before alpha, higher numbers first,
/// anything else last by name.
fn by_priority(versions: &mut [String]) {
    let rank = |v: &str| -> (u8, u64, u64, String) {
        let Some(rest) = v.strip_prefix('v') else {
            return (0, 0, 0, v.to_string());
        };
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Ok(major) = rest[..digits].parse::<u64>() else {
            return (0, 0, 0, v.to_string());
        };
        let tail = &rest[digits..];
        let (class, minor) = match tail {
            "" => (3, Ok(0)),
            t if t.starts_with("beta") => (2, t["beta".len()..].parse::<u64>()),
            t if t.starts_with("alpha") => (1, t["alpha".len()..].parse::<u64>()),
            _ => (0, Ok(0)),
        };
        match minor {
            Ok(minor) => (class, major, minor, String::new()),
            Err(_) => (0, 0, 0, v.to_string()),
        }
    };
    versions.sort_by(|a, b| {
        let (ra, rb) = (rank(a), rank(b));
        // Higher class, major and minor first; unversioned names alphabetically.
        (rb.0, rb.1, rb.2, &ra.3).cmp(&(ra.0, ra.1, ra.2, &rb.3))
    });
}

/// Every API group (the core group is not one) with its served versions, preferred first:
/// the built-in ones, then the CRDs' in the order they were named.
fn group_versions(s: &Store) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |group: &str, version: &str| match groups.iter_mut().find(|(g, _)| g == group) {
        Some((_, vs)) if !vs.iter().any(|v| v == version) => vs.push(version.to_string()),
        Some(_) => {}
        None => groups.push((group.to_string(), vec![version.to_string()])),
    };
    for res in Res::built_in() {
        if let Some((g, v)) = res.api_version().split_once('/') {
            add(g, v);
        }
    }
    for crd in s.list(Res::Crds, None, &Selector::default()) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if version["served"] == true {
                add(group, version["name"].as_str().unwrap_or_default());
            }
        }
    }
    for (_, versions) in &mut groups {
        by_priority(versions);
    }
    groups
}

fn api_group((name, versions): &(String, Vec<String>)) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": entries,
        "preferredVersion": entries.first(),
    })
}

/// `/apis`.
pub(super) fn groups(s: &Store) -> Value {
    let groups: Vec<Value> = group_versions(s).iter().map(api_group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
pub(super) fn group(s: &Store, name: &str) -> Option<Value> {
    let found = group_versions(s).into_iter().find(|(g, _)| g == name)?;
    let mut group = api_group(&found);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub(super) fn resources(s: &Store, api_version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for &res in Res::built_in() {
        if res.api_version() != api_version {
            continue;
        }
        let (singular, short_names, categories, subresources) = built_in(res);
        let mut entry = json!({
            "name": res.plural(), "singularName": singular, "namespaced": res.namespaced(),
            "kind": res.kind(), "verbs": VERBS,
        });
        if !short_names.is_empty() {
            entry["shortNames"] = json!(short_names);
        }
        if !categories.is_empty() {
            entry["categories"] = json!(categories);
        }
        resources.push(entry);
        for (sub, verbs) in subresources {
            resources.push(json!({
                "name": format!("{}/{sub}", res.plural()), "singularName": "",
                "namespaced": res.namespaced(), "kind": res.kind(), "verbs": verbs,
            }));
        }
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    for crd in s.list(Res::Crds, None, &Selector::default()) {
        let spec = &crd["spec"];
        let Some(entry) = spec["versions"].as_array().and_then(|vs| {
            vs.iter()
                .find(|v| v["name"] == version && v["served"] == true)
        }) else {
            continue;
        };
        if spec["group"] != group {
            continue;
        }
        let names = &spec["names"];
        let namespaced = spec["scope"] == "Namespaced";
        let mut resource = json!({
            "name": names["plural"], "singularName": names["singular"].as_str().unwrap_or_default(),
            "namespaced": namespaced, "kind": names["kind"], "verbs": VERBS,
        });
        for key in ["shortNames", "categories"] {
            if names[key].is_array() {
                resource[key] = names[key].clone();
            }
        }
        resources.push(resource);
        if entry["subresources"]["status"].is_object() {
            resources.push(json!({
                "name": format!("{}/status", names["plural"].as_str().unwrap_or_default()),
                "singularName": "", "namespaced": namespaced, "kind": names["kind"],
                "verbs": SUBRESOURCE_VERBS,
            }));
        }
    }
    (!resources.is_empty()).then(|| {
        json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version,
            "resources": resources,
        })
    })
}

/// `/openapi/v3`: where each group version's document is.
pub(super) fn openapi_root(s: &Store) -> Value {
    let mut versions = vec!["v1".to_string()];
    for (group, vs) in group_versions(s) {
        versions.extend(vs.iter().map(|v| format!("{group}/{v}")));
    }
    let paths: serde_json::Map<String, Value> = versions
        .iter()
        .filter_map(|gv| {
            let prefix = openapi_prefix(gv);
            // The hash changes with the document, so clients' caches do too.
            let doc = openapi(s, gv)?;
            let hash = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                doc.to_string().hash(&mut h);
                h.finish()
            };
            let url = format!("/openapi/v3/{prefix}?hash={hash:016X}");
            Some((prefix, json!({"serverRelativeURL": url})))
        })
        .collect();
    json!({"paths": paths})
}

/// `api/v1` or `apis/{group}/{version}`.
fn openapi_prefix(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    }
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`, if served: only what
/// `kubectl` reads there, each resource's PATCH operation with its group-version-kind and
/// the `fieldValidation` parameter (so `kubectl apply` leaves validation to the server), and
/// no schemas (so it patches as it does an unknown type: a merge patch).
pub(super) fn openapi(s: &Store, api_version: &str) -> Option<Value> {
    let list = resources(s, api_version)?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let prefix = openapi_prefix(api_version);
    let mut paths = serde_json::Map::new();
    for r in list["resources"].as_array().into_iter().flatten() {
        let plural = r["name"].as_str().unwrap_or_default();
        if plural.contains('/') {
            continue;
        }
        let path = if r["namespaced"] == true {
            format!("/{prefix}/namespaces/{{namespace}}/{plural}/{{name}}")
        } else {
            format!("/{prefix}/{plural}/{{name}}")
        };
        let gvk = json!({"group": group, "version": version, "kind": r["kind"]});
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", r["kind"].as_str().unwrap_or_default()),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [{
                    "name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true},
                    "description": "Ignore, Warn or Strict: what the server does with unknown fields.",
                }],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-fake"},
        "paths": paths,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v: Vec<String> = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"]
            .map(String::from)
            .to_vec();
        super::by_priority(&mut v);
        assert_eq!(
            v,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }
}
