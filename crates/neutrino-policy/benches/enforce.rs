//! Benchmark: the policy work of one `POST /v2.0/ports`, and of one port read.
//!
//!     cargo bench -p neutrino-policy --bench enforce
//!
//! A member creates a port on its own network, setting `fixed_ips` (subnet and address),
//! `mac_address`, `allowed_address_pairs`, `port_security_enabled` and `device_owner`, so
//! `authorize("create_port", …)` evaluates the action's rule and nine attribute rules. The
//! target is the request body under an [`Overlay`] adding `network:tenant_id` and `shared`,
//! as the server would build it. Also timed: `hidden_attributes("get_port", …)` on a bound
//! port (what a GET strips) and a bare `enforce("get_port", …)`.
//!
//! Each is run with the defaults and with a 200-rule operator file: every port and network
//! rule rewritten as `rule:cloud_ops or (DEFAULT)`, where `cloud_ops` goes through a chain of
//! the file's own rules, and unknown rules for features Neutrino lacks filling it to 200.
//! Before criterion's figures, a plain loop prints the per-call cost of each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use neutrino_policy::{Credentials, Overlay, Policy, DEFAULT_RULES};
use serde_json::{json, Value};

/// The 200-rule operator file described above.
fn operator_file() -> String {
    let mut rules: Vec<(String, String)> = Vec::new();
    rules.push((
        "cloud_ops".into(),
        "role:cloud_ops or rule:ops_chain_0".into(),
    ));
    for level in 0..10 {
        let next = if level < 9 {
            format!("rule:ops_chain_{}", level + 1)
        } else {
            "role:ops_auditor and user_id:%(user_id)s".into()
        };
        rules.push((
            format!("ops_chain_{level}"),
            format!("role:ops_{level} or {next}"),
        ));
    }
    for default in DEFAULT_RULES {
        let touched = default.name.contains("port") || default.name.contains("network");
        if touched && !default.operations.is_empty() {
            rules.push((
                default.name.to_owned(),
                format!("rule:cloud_ops or ({})", default.check),
            ));
        }
    }
    let mut extra = 0;
    while rules.len() < 200 {
        rules.push((
            format!("create_qos_rule_{extra}"),
            "(rule:admin_only) or (role:member and project_id:%(project_id)s)".into(),
        ));
        extra += 1;
    }
    rules
        .iter()
        .map(|(name, check)| {
            format!(
                "{}: {}\n",
                Value::from(name.as_str()),
                Value::from(check.as_str())
            )
        })
        .collect()
}

/// Runs `f` long enough for a stable mean and prints the mean per call.
fn print_per_call(label: &str, mut f: impl FnMut() -> bool) {
    let calls = 200_000;
    let started = Instant::now();
    for _ in 0..calls {
        black_box(f());
    }
    let per_call = started.elapsed().as_nanos() as f64 / f64::from(calls);
    println!("{label:<44} {per_call:>8.0} ns per call");
}

fn main() {
    let (operator_policy, unknown) =
        Policy::with_overrides(&operator_file(), "bench.yaml").expect("bench file loads");
    println!(
        "operator file: 200 rules, {} unknown to Neutrino",
        unknown.len()
    );
    let policies = [
        ("defaults", Policy::defaults()),
        ("operator_200", operator_policy),
    ];

    let request = json!({
        "network_id": "net-1",
        "name": "web-1",
        "fixed_ips": [{"subnet_id": "subnet-1", "ip_address": "10.0.0.5"}],
        "mac_address": "fa:16:3e:12:34:56",
        "allowed_address_pairs": [{"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:12:34:57"}],
        "port_security_enabled": true,
        "device_owner": "compute:nova",
        "project_id": "project-1",
        "tenant_id": "project-1",
    });
    let target = Overlay::new(&request)
        .with("network:tenant_id", json!("project-1"))
        .with("network:project_id", json!("project-1"))
        .with("shared", json!(false));
    let bound_port = json!({
        "id": "port-1", "project_id": "project-1", "tenant_id": "project-1",
        "network_id": "net-1", "binding:host_id": "compute-7", "binding:vif_type": "ovs",
        "binding:vif_details": {"port_filter": true}, "binding:profile": {},
        "binding:vnic_type": "normal", "device_owner": "compute:nova",
    });
    let roles = vec!["member".to_owned(), "reader".to_owned()];
    let creds = Credentials {
        user_id: "user-1",
        project_id: "project-1",
        roles: &roles,
    };

    for (label, policy) in &policies {
        let applicable = policy
            .applicable_attribute_rules("create_port", &request)
            .count();
        assert_eq!(applicable, 9, "{label}");
        assert!(policy
            .authorize("create_port", &target, &request, &creds)
            .is_ok());
        print_per_call(&format!("{label}: create_port + attribute rules"), || {
            policy
                .authorize(black_box("create_port"), &target, &request, &creds)
                .is_ok()
        });
        print_per_call(&format!("{label}: get_port hidden attributes"), || {
            policy
                .hidden_attributes(black_box("get_port"), &bound_port, &creds)
                .len()
                == 4
        });
        print_per_call(&format!("{label}: enforce get_port"), || {
            policy.enforce(black_box("get_port"), &bound_port, &creds)
        });
    }

    let mut c = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for (label, policy) in &policies {
        let mut g = c.benchmark_group(format!("policy_{label}"));
        g.bench_function("create_port_authorize", |b| {
            b.iter(|| {
                policy
                    .authorize(black_box("create_port"), &target, &request, &creds)
                    .is_ok()
            })
        });
        g.bench_function("get_port_hidden_attributes", |b| {
            b.iter(|| policy.hidden_attributes(black_box("get_port"), &bound_port, &creds))
        });
        g.bench_function("get_port_enforce", |b| {
            b.iter(|| policy.enforce(black_box("get_port"), &bound_port, &creds))
        });
        g.finish();
    }
    c.bench_function("load_operator_file_200", |b| {
        let text = operator_file();
        b.iter(|| Policy::with_overrides(black_box(&text), "bench.yaml").is_ok())
    });
    c.final_summary();
}
