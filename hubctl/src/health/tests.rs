//! The health rules against what real hubs printed (tests/fixtures/health).

use super::*;
use crate::conf::Conf;
use crate::record::{Center, Peer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A fixture of tests/fixtures/health (capture.sh there made them).
pub(crate) fn fixture(file: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/health/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// With GOLDEN_UPDATE=1, FILE of tests/fixtures/health becomes TEXT (what this hubctl makes of
/// a fixture: look at the diff before committing it).
pub(crate) fn update_fixture(file: &str, text: &str) {
    if std::env::var_os("GOLDEN_UPDATE").is_some() {
        let path = format!(
            "{}/tests/fixtures/health/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// What the hub of a fixture saw: its settings, records and tool outputs.
pub(crate) struct Case {
    conf: Conf,
    center: Option<Center>,
    peers: BTreeMap<String, Peer>,
    pub(crate) seen: Observed,
}

impl Case {
    pub(crate) fn load(name: &str) -> Case {
        let input: Value = serde_json::from_str(&fixture(&format!("{name}.json"))).unwrap();
        let env: HashMap<String, String> = serde_json::from_value(input["env"].clone()).unwrap();
        let records: Vec<Peer> = serde_json::from_value(input["records"].clone()).unwrap();
        Case {
            conf: Conf::from_map(&env).unwrap(),
            center: serde_json::from_value(input["center"].clone()).unwrap(),
            peers: records.into_iter().map(|p| (p.name.clone(), p)).collect(),
            seen: Observed::from_json(&input),
        }
    }

    pub(crate) fn status(&self) -> Value {
        status(&self.conf, self.center.as_ref(), &self.peers, &self.seen)
    }
}

/// Every captured hub (and netns-synthetic, a captured one edited where the kernel cannot be
/// made to say it) against status.jq's output for the same inputs, byte for byte, plus what
/// status.jq did not know: each peer's forwards, allow list and denied packets, and, the
/// hubs having been built before them, the absence of the netns peers' access rules and port
/// isolation (which `hub up` adds).
pub(crate) const CASES: [&str; 14] = [
    "netns-healthy",
    "netns-broken",
    "netns-broken-center",
    "netns-no-switch",
    "netns-not-recorded",
    "netns-no-center",
    "netns-v6-trunks",
    "netns-v6-trunks-broken",
    "netns-synthetic",
    "zones-healthy",
    "zones-broken",
    "zones-v6-healthy",
    "zones-v6-broken",
    "zones-no-center",
];

#[test]
fn status_is_status_jq() {
    for name in CASES {
        let got = serde_json::to_string(&Case::load(name).status()).unwrap();
        update_fixture(&format!("{name}.status.json"), &format!("{got}\n"));
        let want = fixture(&format!("{name}.status.json"));
        assert_eq!(got, want.trim_end(), "{name}");
    }
}

#[test]
fn the_view_structs_read_back_what_they_print() {
    for name in CASES {
        let got = Case::load(name).status();
        let back: Status = serde_json::from_value(got.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), got, "{name}");
    }
}

/// Sets `listener_filtered` on the interface WG in the show OWNER.
fn set_listener(case: &mut Case, owner: &str, wg: &str, filtered: Value) {
    let json = case.seen.shows.get_mut(owner).unwrap();
    let mut show: Value = serde_json::from_str(json).unwrap();
    let interfaces = show["interfaces"].as_array_mut().unwrap();
    let i = interfaces.iter_mut().find(|i| i["name"] == wg).unwrap();
    i["listener_filtered"] = filtered;
    *json = show.to_string();
}

fn problems(status: &Value, peer: usize) -> Vec<String> {
    serde_json::from_value(status["peers"][peer]["problems"].clone()).unwrap()
}

#[test]
fn an_unfiltered_listener_is_a_problem_right_after_the_tunnels() {
    let unfiltered =
        "wireguard-go's listener of hxa-wg is unfiltered: every link event in the center wakes it (wgctl warned when it made it)";
    // a healthy hub: its only problem, in both modes
    for (name, owner) in [("netns-healthy", "a:wg"), ("zones-healthy", "center:wg")] {
        let mut case = Case::load(name);
        let healthy = case.status();
        for unknown in [Value::Null, Value::Bool(true)] {
            set_listener(&mut case, owner, "hxa-wg", unknown);
            assert_eq!(
                case.status(),
                healthy,
                "{name}: null and true are no problem"
            );
        }
        set_listener(&mut case, owner, "hxa-wg", Value::Bool(false));
        let got = case.status();
        // (before the others: the netns hub, built before access rules, lacks them)
        let mut want = vec![unfiltered.to_string()];
        want.extend(problems(&healthy, 0));
        assert_eq!(problems(&got, 0), want, "{name}");
        assert_eq!(
            (got["healthy"].clone(), got["peers"][0]["healthy"].clone()),
            (false.into(), false.into())
        );
        assert_eq!(
            got["peers"][1], healthy["peers"][1],
            "{name}: only its peer"
        );
    }
    // a peer with tunnel problems and others after them
    let mut case = Case::load("netns-broken");
    let mut want = problems(&case.status(), 0);
    let last_tunnel = want
        .iter()
        .position(|p| p.starts_with("the client's peer on hxa-wg routes"))
        .unwrap();
    assert_eq!(
        want[last_tunnel + 1],
        "no filter letting hxa-wg's traffic reach 100.64.0.0/24 in namespace hxa"
    );
    want.insert(last_tunnel + 1, unfiltered.to_string());
    set_listener(&mut case, "a:wg", "hxa-wg", Value::Bool(false));
    assert_eq!(problems(&case.status(), 0), want);
}

/// Sets `ipv6` on the link NAME in the links of OWNER.
fn set_ipv6(case: &mut Case, owner: &str, name: &str, ipv6: Value) {
    let json = case.seen.shows.get_mut(owner).unwrap();
    let mut show: Value = serde_json::from_str(json).unwrap();
    let links = show["links"].as_array_mut().unwrap();
    links.iter_mut().find(|l| l["name"] == name).unwrap()["ipv6"] = ipv6;
    *json = show.to_string();
}

#[test]
fn a_tunnels_ipv6_against_the_hubs_is_a_problem_of_its_peer_only() {
    for (name, owner, want, problem) in [
        (
            "zones-healthy",
            "center:links",
            false,
            "hxa-wg has IPv6 on, not off: a zones hub without HUB_CIDR6 keeps it off ('hub up' sets it)",
        ),
        (
            "zones-v6-healthy",
            "center:links",
            true,
            "hxa-wg has IPv6 off, not on: HUB_CIDR6 needs it on ('hub up' sets it)",
        ),
    ] {
        let mut case = Case::load(name);
        let healthy = case.status();
        // (what an nsctl that does not say, or a link without IPv6, reads as: no opinion)
        set_ipv6(&mut case, owner, "hxa-wg", Value::Null);
        assert_eq!(case.status(), healthy, "{name}: null is no problem");
        set_ipv6(&mut case, owner, "hxa-wg", Value::Bool(want));
        assert_eq!(case.status(), healthy, "{name}: as the hub keeps it");
        set_ipv6(&mut case, owner, "hxa-wg", Value::Bool(!want));
        let got = case.status();
        assert!(problems(&got, 0).iter().any(|p| p == problem), "{name}: {got}");
        assert_eq!(got["healthy"], false, "{name}");
        assert_eq!(got["peers"][1], healthy["peers"][1], "{name}: only its peer");
    }
    // a netns hub without HUB_CIDR6 has no opinion on its tunnels' IPv6
    let mut case = Case::load("netns-healthy");
    let healthy = case.status();
    set_ipv6(&mut case, "a:links", "hxa-wg", Value::Bool(false));
    set_ipv6(&mut case, "b:links", "hxb-wg", Value::Bool(true));
    assert_eq!(case.status(), healthy);
}

#[test]
fn tool_outputs_of_another_shape_read_as_absent() {
    let mut case = Case::load("netns-healthy");
    case.seen.shows.insert(
        "a:routes".into(),
        serde_json::json!({"routes": null}).to_string(),
    );
    case.seen.shows.insert(
        "a:nat".into(),
        serde_json::json!("not an object").to_string(),
    );
    case.seen.shows.insert(
        "a:links".into(),
        serde_json::json!({"links": [{"name": "hxa-in", "addresses": null}]}).to_string(),
    );
    let got = problems(&case.status(), 0);
    assert_eq!(
        got,
        [
            "veth hxa-in is down in namespace hxa",
            "hxa-in lacks its address 100.64.0.1/24",
            "WireGuard interface hxa-wg is missing in namespace hxa",
            "no default route into hxa-wg in namespace hxa",
            "no NAPT rule (masquerade out of hxa-in) in namespace hxa",
            "no filter letting hxa-wg's traffic reach 100.64.0.0/24 in namespace hxa",
            "no filter letting the replies from hxa-wg pass in namespace hxa",
            "no filter dropping the rest of hxa-wg's traffic in namespace hxa",
            "bridge port hxa-br in namespace hxhub.switch is not isolated (HUB_ISOLATE=yes)",
        ]
    );
}

/// What `NIRANSIX_HUB_OBSERVED` writes reads back as it was, for every captured hub.
#[test]
fn what_status_read_is_written_as_the_fixtures_hold_it() {
    for name in CASES {
        let case = Case::load(name);
        assert_eq!(
            Observed::from_json(&case.seen.to_json()),
            case.seen,
            "{name}"
        );
    }
}

/// Every listing of every captured hub reads whole as its type in [`crate::listing`]: health
/// takes a listing of another shape as absent, but pruning and `down` refuse it, so a field
/// typed wrong would stop them on a real hub.
#[test]
fn every_captured_listing_reads_as_its_type() {
    use crate::listing::*;
    fn strict<T: serde::de::DeserializeOwned + Default>(json: &str, what: &str) {
        if let Err(e) = parse::<T>(json, what) {
            panic!("{e}");
        }
    }
    let mut read = 0;
    for name in CASES {
        for (owner, json) in &Case::load(name).seen.shows {
            let what = format!("{name} {owner}");
            match owner.rsplit(':').next().unwrap() {
                "links" | "switch" => strict::<LinkList>(json, &what),
                "fwd" | "fwd6" => strict::<SysctlShow>(json, &what),
                "wg" => strict::<WgShow>(json, &what),
                "routes" => strict::<RouteList>(json, &what),
                "rules" => strict::<RuleList>(json, &what),
                "nat" => strict::<NatList>(json, &what),
                "sets" => strict::<SetList>(json, &what),
                other => panic!("{what}: a listing this test does not know: {other}"),
            }
            read += 1;
        }
    }
    assert!(read >= 100, "{read} listings");
}
