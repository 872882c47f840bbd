//! `neutrino-bench`: a small load tool measuring throughput (ops/s) and
//! latency percentiles (p50/p99) of any Neutron v2.0-compatible network API —
//! Neutrino itself or an upstream `neutron-server` — so that both can be
//! compared with the same client and the same request bodies.
//!
//! It is exposed as `neutrino bench ...` by the `neutrino` binary: the binary
//! flattens [`BenchArgs`] into its sub-command, calls [`run`] and prints the
//! returned [`Report`] (`print!("{report}")`: a markdown table, or JSON with
//! `--json`).
//!
//! # Endpoint and credentials
//!
//! * `--url` and `--token`: used as given; nothing else is contacted.
//! * otherwise the `OS_*` variables of an openrc are used: `OS_AUTH_URL`,
//!   `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`, `OS_USER_DOMAIN_NAME`,
//!   `OS_PROJECT_DOMAIN_NAME` (the domains default to `Default`). The tool
//!   POSTs a Keystone v3 password authentication scoped to the project to
//!   `{OS_AUTH_URL}/auth/tokens` (`/v3` is appended when the URL has no
//!   version suffix), takes the token from the `X-Subject-Token` header and
//!   the network endpoint from the `public` endpoint of the `network` entry
//!   of `token.catalog` (preferring `OS_REGION_NAME` when set). `--url`
//!   overrides the catalog endpoint; with `--token` alone the token is
//!   validated at `OS_AUTH_URL` to read its catalog.
//!
//! Every request carries `X-Auth-Token`. No HTTP proxy is used.
//!
//! # Scenarios
//!
//! With N = `--ports` and C = `--concurrency`:
//!
//! | scenario | what is measured |
//! |---|---|
//! | `network-create` | N/4 sequential `POST /v2.0/networks` |
//! | `network-delete` | sequential `DELETE` of those networks |
//! | `subnet-create` | N/10 sequential `POST /v2.0/subnets` (distinct /28s of 10.0.0.0/8) on one network |
//! | `subnet-delete` | sequential `DELETE` of those subnets |
//! | `port-create-seq` | N sequential `POST /v2.0/ports` on a network with a /20 subnet |
//! | `port-create-concurrent` | N `POST /v2.0/ports` by C concurrent clients |
//! | `port-list` | `--list-repeats` (50) × `GET /v2.0/ports?network_id=X` with ≥ N ports |
//! | `port-list-fields` | the same with `&fields=id&fields=mac_address&fields=fixed_ips` |
//! | `port-delete` | `DELETE` of all the ports by C concurrent clients |
//!
//! Three more scenarios are not part of the default set and run only when
//! named in `--scenarios` (so the default run is unchanged), after the ones
//! above:
//!
//! | scenario | what is measured |
//! |---|---|
//! | `pool-subnet-create` | N/4 sequential `POST /v2.0/subnets` allocating a /28 (`subnetpool_id`, `prefixlen`) from a subnet pool (10.128.0.0/9) that already has `--pool-prefill` (10000) allocations; reported as `pool-subnet-create (prefill P)` |
//! | `router-interface` | with one router and N/4 networks with one /28 of 10.200.0.0/16 each: sequential `PUT /v2.0/routers/{id}/add_router_interface` of every subnet (`router-interface-add`), then `remove_router_interface` of every attached one (`router-interface-remove`) |
//! | `sfc` | with N port chains present (each with its own TCP/80 flow classifier from a distinct /32 of 172.16.0.0/12, port pair of MPLS correlation and port pair group; created C at a time, unmeasured): M = N/10 (even, ≥ 2) sequential creates each of `sfc-flow-classifier-create`, `sfc-port-pair-create`, `sfc-port-pair-group-create`, `sfc-port-chain-create` (one new group and classifier each), then M/2 `sfc-service-graph-create` linking the new chains two by two; each reported as `... (N chains)`. It raises the network, subnet, port and SFC quotas like the others and deletes the SFC objects first in its cleanup |
//!
//! Their set-up is unmeasured: `pool-subnet-create` creates the pool and one
//! network and prefills the pool with sequential bulk `POST /v2.0/subnets`
//! of up to 500 subnets (50 in the first one), each next one sized to take
//! about a quarter of `--timeout` at the rate of the previous one
//! (allocation may slow down as the pool fills); after a failed bulk
//! request, the rest are created one by one, C at a time.
//! `router-interface` creates the router, networks and subnets C at a time.
//!
//! Both first try to make the network, subnet and port quotas of the
//! caller's project (the `project_id` of the pool or router created)
//! unlimited with `PUT /v2.0/quotas/{project_id}`: when that is refused
//! (not an admin) a warning is printed and the scenario goes on with the
//! current quotas; otherwise the previous limits are put back after the
//! cleanup. Their cleanup detaches remaining router interfaces, then deletes
//! the router, the subnets (also any other subnet allocated from the pool),
//! the networks and the pool.
//!
//! Scenarios run in the order above (whatever the order of `--scenarios`).
//! The objects a selected scenario needs but that no selected scenario
//! creates (the networks for `network-delete` alone, the ports for
//! `port-list`...) are created beforehand, unmeasured. The list scenarios
//! reuse the ports created by the port-create scenarios and create only the
//! missing ones; every listing must contain all those ports and the same
//! total (other ports, e.g. DHCP ones, are allowed) on every repetition.
//! Each group (networks, subnets, ports) cleans up everything it created —
//! ports, subnets, networks, with bounded concurrency — also when it fails.
//!
//! # Measurements
//!
//! Latency is taken with [`std::time::Instant`] around each request, from
//! sending it to having read the whole response body (client-side JSON
//! encoding and decoding excluded). Percentiles use the nearest-rank method
//! over the successful operations. `ops` counts successful operations,
//! `errors` non-2xx answers, transport errors and inconsistent listings
//! (the first error of each scenario is printed to stderr); `ops_per_sec` is
//! `ops` divided by the wall-clock time of the measured phase. Every loop
//! performs a fixed number of requests, each with a timeout (`--timeout`).
//!
//! Upstream Neutron's default quotas (100 networks, 100 subnets, 500 ports)
//! are lower than what the default N = 1000 needs: raise them for the
//! benchmark project first, or over-quota answers are counted as errors
//! (`pool-subnet-create` and `router-interface` try to raise them
//! themselves, see above).
//!
//! The HTTP client is built without TLS support of its own: use `http://`
//! endpoints (such as `http://127.0.0.1:9696`).

mod api;
mod auth;
mod error;
mod fuzz;
mod report;
mod scenarios;
mod storm;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::BenchError;
pub use fuzz::{run_fuzz, Finding, FuzzArgs, FuzzReport};
pub use report::{Report, ScenarioResult};
pub use storm::{run_storm, StormArgs, StormReport};

/// A benchmark scenario (`--scenarios` value).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Sequential network creation (N/4).
    NetworkCreate,
    /// Sequential network deletion (N/4).
    NetworkDelete,
    /// Sequential /28 subnet creation on one network (N/10).
    SubnetCreate,
    /// Sequential subnet deletion (N/10).
    SubnetDelete,
    /// Sequential port creation (N).
    PortCreateSeq,
    /// Port creation by C concurrent clients (N).
    PortCreateConcurrent,
    /// Repeated listing of the ports of a network.
    PortList,
    /// Repeated listing with `fields=id,mac_address,fixed_ips`.
    PortListFields,
    /// Deletion of all the ports by C concurrent clients.
    PortDelete,
    /// Sequential /28 allocation from a subnet pool with many allocations
    /// (N/4; not in the default set).
    PoolSubnetCreate,
    /// Sequential add, then remove, of N/4 router interfaces (not in the
    /// default set).
    RouterInterface,
    /// Sequential creates of every SFC resource kind with N port chains
    /// present (N/10 each; not in the default set).
    Sfc,
}

impl Scenario {
    /// The default scenarios (run when `--scenarios` is not given), in
    /// execution order.
    pub const ALL: [Scenario; 9] = [
        Scenario::NetworkCreate,
        Scenario::NetworkDelete,
        Scenario::SubnetCreate,
        Scenario::SubnetDelete,
        Scenario::PortCreateSeq,
        Scenario::PortCreateConcurrent,
        Scenario::PortList,
        Scenario::PortListFields,
        Scenario::PortDelete,
    ];

    /// The scenarios that run only when named in `--scenarios`, in execution
    /// order (after [`Scenario::ALL`]).
    pub const OPTIONAL: [Scenario; 3] = [
        Scenario::PoolSubnetCreate,
        Scenario::RouterInterface,
        Scenario::Sfc,
    ];
}

/// Arguments of `neutrino bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Network API base URL, e.g. http://127.0.0.1:9696 (/v2.0/... is
    /// appended). Default: the public `network` endpoint of the Keystone
    /// catalog (OS_* variables).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Keystone token sent as X-Auth-Token. Default: log in with the OS_*
    /// variables of an openrc (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD,
    /// OS_PROJECT_NAME, OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Number of ports (N) for the port-create scenarios and port listing;
    /// N/4 networks and N/10 subnets are created.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub ports: usize,

    /// Number of concurrent clients (C) for the concurrent scenarios,
    /// fixtures and cleanup.
    #[arg(long, value_name = "C", default_value_t = 8)]
    pub concurrency: usize,

    /// Comma-separated scenarios to run (default: every scenario except
    /// pool-subnet-create, router-interface and sfc, which run only when
    /// named).
    #[arg(long, value_name = "SCENARIO,...", value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,

    /// Print the report as JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,

    /// Repetitions of each port-list scenario.
    #[arg(long, value_name = "COUNT", default_value_t = 50)]
    pub list_repeats: usize,

    /// Timeout of each HTTP request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,

    /// Subnets allocated from the subnet pool (in bulk, unmeasured) before
    /// pool-subnet-create measures N/4 more.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub pool_prefill: usize,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            url: None,
            token: None,
            ports: 1000,
            concurrency: 8,
            scenarios: Vec::new(),
            json: false,
            list_repeats: 50,
            timeout: 60,
            pool_prefill: 10000,
        }
    }
}

impl BenchArgs {
    /// The scenarios to run, deduplicated, in execution order.
    pub fn selected_scenarios(&self) -> Vec<Scenario> {
        if self.scenarios.is_empty() {
            return Scenario::ALL.to_vec();
        }
        Scenario::ALL
            .into_iter()
            .chain(Scenario::OPTIONAL)
            .filter(|s| self.scenarios.contains(s))
            .collect()
    }

    fn validate(&self) -> Result<(), BenchError> {
        if self.ports == 0 {
            return Err(BenchError::InvalidArgs("--ports must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(BenchError::InvalidArgs(
                "--concurrency must be at least 1".into(),
            ));
        }
        if self.list_repeats == 0 {
            return Err(BenchError::InvalidArgs(
                "--list-repeats must be at least 1".into(),
            ));
        }
        if self.timeout == 0 {
            return Err(BenchError::InvalidArgs(
                "--timeout must be at least 1".into(),
            ));
        }
        let selected = self.selected_scenarios();
        let quarter = (self.ports / 4).max(1);
        if selected.contains(&Scenario::PoolSubnetCreate)
            && self.pool_prefill.saturating_add(quarter) > scenarios::POOL_CAPACITY
        {
            return Err(BenchError::InvalidArgs(format!(
                "pool-subnet-create: --pool-prefill {} plus --ports/4 = {quarter} subnets do not \
                 fit as /28s in 10.128.0.0/9 ({} at most)",
                self.pool_prefill,
                scenarios::POOL_CAPACITY
            )));
        }
        if selected.contains(&Scenario::RouterInterface) && quarter > scenarios::ROUTER_SUBNETS_MAX
        {
            return Err(BenchError::InvalidArgs(format!(
                "router-interface: --ports/4 = {quarter} subnets do not fit as /28s in \
                 10.200.0.0/16 ({} at most)",
                scenarios::ROUTER_SUBNETS_MAX
            )));
        }
        Ok(())
    }
}

/// Reads a non-empty environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Runs the selected scenarios against the endpoint and returns their
/// measurements. Progress and the first error of each scenario go to
/// stderr; the report itself is not printed (the caller prints it).
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let timeout = Duration::from_secs(args.timeout);
    let http = api::client_builder(timeout)?.build()?;
    let (url, token) =
        auth::resolve(&http, args.url.as_deref(), args.token.as_deref(), &env_var).await?;
    eprintln!("neutrino-bench: network endpoint {url}");

    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let ctx = scenarios::Ctx {
        api: api::Api::new(&url, &token, timeout)?,
        ports: args.ports,
        concurrency: args.concurrency,
        list_repeats: args.list_repeats,
        name_prefix: format!("neutrino-bench-{}-{started:x}", std::process::id()),
        pool_prefill: args.pool_prefill,
        timeout,
    };
    let results = ctx.run_all(&args.selected_scenarios()).await?;
    Ok(Report {
        results,
        json: args.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn parses_flags_and_defaults() {
        let cli = Cli::parse_from(["bench"]);
        assert_eq!(cli.bench.ports, 1000);
        assert_eq!(cli.bench.concurrency, 8);
        assert_eq!(cli.bench.list_repeats, 50);
        assert!(!cli.bench.json);
        assert_eq!(cli.bench.selected_scenarios(), Scenario::ALL.to_vec());

        let cli = Cli::parse_from([
            "bench",
            "--url",
            "http://127.0.0.1:9696",
            "--token",
            "t",
            "--ports",
            "40",
            "--concurrency",
            "4",
            "--scenarios",
            "port-delete,port-create-seq,port-delete",
            "--json",
        ]);
        assert_eq!(cli.bench.url.as_deref(), Some("http://127.0.0.1:9696"));
        assert_eq!(cli.bench.ports, 40);
        assert!(cli.bench.json);
        assert_eq!(
            cli.bench.selected_scenarios(),
            vec![Scenario::PortCreateSeq, Scenario::PortDelete]
        );
        assert!(Cli::try_parse_from(["bench", "--scenarios", "nope"]).is_err());
    }

    #[test]
    fn optional_scenarios_run_only_when_named() {
        let cli = Cli::parse_from(["bench"]);
        assert_eq!(cli.bench.pool_prefill, 10000);
        let default = cli.bench.selected_scenarios();
        assert!(!default.contains(&Scenario::PoolSubnetCreate));
        assert!(!default.contains(&Scenario::RouterInterface));

        let cli = Cli::parse_from([
            "bench",
            "--scenarios",
            "router-interface,pool-subnet-create,port-list",
            "--pool-prefill",
            "500",
        ]);
        assert_eq!(cli.bench.pool_prefill, 500);
        assert_eq!(
            cli.bench.selected_scenarios(),
            vec![
                Scenario::PortList,
                Scenario::PoolSubnetCreate,
                Scenario::RouterInterface
            ]
        );
        assert!(cli.bench.validate().is_ok());
    }

    #[test]
    fn optional_scenario_sizes_are_validated() {
        let args = |scenario, ports, pool_prefill| BenchArgs {
            scenarios: vec![scenario],
            ports,
            pool_prefill,
            ..BenchArgs::default()
        };
        let pool = Scenario::PoolSubnetCreate;
        assert!(args(pool, 1000, 10000).validate().is_ok());
        assert!(args(pool, 1000, 0).validate().is_ok());
        assert!(args(pool, 4, (1 << 19) - 1).validate().is_ok());
        assert!(matches!(
            args(pool, 8, (1 << 19) - 1).validate(),
            Err(BenchError::InvalidArgs(_))
        ));
        let router = Scenario::RouterInterface;
        assert!(args(router, 4 * 4096 + 3, 10000).validate().is_ok());
        assert!(args(router, 4 * 4097, 10000).validate().is_err());
        // Sizes of unselected scenarios are not checked.
        assert!(args(Scenario::PortList, 4 * 4097, usize::MAX)
            .validate()
            .is_ok());
    }

    #[tokio::test]
    async fn rejects_invalid_arguments_before_any_request() {
        let args = BenchArgs {
            ports: 0,
            ..BenchArgs::default()
        };
        assert!(matches!(run(args).await, Err(BenchError::InvalidArgs(_))));
        let args = BenchArgs {
            url: Some("not-a-url".into()),
            token: Some("t".into()),
            ..BenchArgs::default()
        };
        assert!(matches!(
            run(args).await,
            Err(BenchError::InvalidUrl { .. })
        ));
    }
}
