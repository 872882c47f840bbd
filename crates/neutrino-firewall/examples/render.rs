//! Print the `nft -f` transaction for a model file:
//! `cargo run --example render -- MODEL.json [OBSERVED.json ...]` where the observed files
//! are `nft -j -n list table ...` outputs (none: the full render).

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: render MODEL.json [OBSERVED.json ...]");
    let text = std::fs::read_to_string(&path).expect("readable model");
    let model: neutrino_firewall::FirewallModel =
        serde_json::from_str(&text).expect("a FirewallModel in JSON");
    let mut observed = neutrino_firewall::ObservedTables::default();
    for file in args {
        let json = std::fs::read_to_string(&file).expect("readable listing");
        observed.add_json(&json).expect("nft -j output");
    }
    let plan = neutrino_firewall::plan(&model, &observed);
    for w in plan.warnings() {
        eprintln!("warning: {w}");
    }
    print!("{}", plan.script());
}
