//! The `neutrino` binary: `neutrino server` (Neutron v2.0 API + built-in Keystone v3 subset),
//! `neutrino agent` (one per host: realises the host's networks in the kernel) and
//! `neutrino bench` (a load tool for any Neutron-compatible endpoint).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{CommandFactory, Parser, Subcommand};
use neutrino_api::AuthMode;
use neutrino_app::{App, Config};
use neutrino_store::Store;

mod config_file;
mod host_credential;
mod tls;

/// mimalloc: the server allocates many small JSON values per request; glibc malloc showed up
/// as the largest single cost when listing ports.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--help` text on logging, shared by the binary and its subcommands.
const LOGGING_HELP: &str = "\
Logging: to stderr, at level INFO by default; the server logs one line per HTTP request
(method, path, status, duration in ms). RUST_LOG sets the level, for everything or per
module: RUST_LOG=debug, RUST_LOG=warn (no request lines), RUST_LOG=info,neutrino_api=warn
(everything but the request lines). Colours only when stderr is a terminal (NO_COLOR=1:
never); --log-format json writes JSON lines. Each request's lines carry its request id, the
x-openstack-request-id of its response.";

#[derive(Parser)]
#[command(
    name = "neutrino",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("NEUTRINO_COMMIT"), ")"),
    about = "Neutron-compatible network control plane",
    after_help = LOGGING_HELP
)]
struct Cli {
    /// The configuration file (TOML): a `[server]` and an `[agent]` table whose keys are the
    /// options' names (`data_dir = "..."`); the command line and the environment win over
    /// it. Default: /etc/neutrino/neutrino.toml when it exists.
    #[arg(long, global = true, env = "NEUTRINO_CONFIG")]
    config: Option<String>,
    /// Log lines as text (coloured on a terminal) or as JSON objects, one per line, for log
    /// shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NEUTRINO_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: time, level, target, message, fields and the spans (the
    /// request id of an API request).
    Json,
}

/// Logs to stderr at `RUST_LOG`'s levels (INFO by default) in the chosen format.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(log_colours()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Neutron v2.0 API and the built-in identity service.
    #[command(after_help = LOGGING_HELP)]
    Server(ServerArgs),
    /// Run the host agent: realise this host's ports and networks in the kernel.
    #[command(after_help = LOGGING_HELP)]
    Agent(AgentArgs),
    /// Measure ops/s and latency of a Neutron-compatible endpoint.
    Bench(neutrino_bench::BenchArgs),
    /// Send generated bad input to a Neutron endpoint; fails on any 5xx, transport error or
    /// non-Neutron error body.
    Fuzz(neutrino_bench::FuzzArgs),
    /// A start-up storm of simulated agents (register, snapshot, watch; no kernel) while a
    /// user probes the API; fails unless every agent converged and every probe answered.
    Storm(neutrino_bench::StormArgs),
    /// Check a stopped server's store: references, claims; exits non-zero on any problem.
    CheckStore(CheckStoreArgs),
    /// Manage the host agents' credentials (admin's openrc): `create --host H` writes the
    /// agent's openrc, whose token serves only that host's agent calls.
    HostCredential(host_credential::HostCredentialArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (neutrino.1, neutrino-server.1, ...) into a directory.
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
    /// The agent's userspace WireGuard device (`--encrypt-overlay`), started by the agent in
    /// the dataplane namespace: a TUN named NAME, configured through
    /// /var/run/wireguard/NAME.sock.
    #[command(hide = true)]
    OverlayDevice {
        /// The TUN's name.
        #[arg(long)]
        name: String,
    },
}

/// Writes `neutrino.1` and one page per subcommand (`neutrino-server.1`, ...) into `dir`.
fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    let mut pages = vec![("neutrino".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("neutrino-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(name.replace('-', " "));
        pages.push((name, page));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[derive(clap::Args)]
struct CheckStoreArgs {
    /// Data directory of the server (its `neutrino.db`).
    #[arg(long, env = "NEUTRINO_DATA_DIR", default_value = "./neutrino-data")]
    data_dir: PathBuf,
    /// PostgreSQL URL instead of the data directory's SQLite database.
    #[arg(long, env = "NEUTRINO_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// This host's name: ports with this `binding:host_id` are plugged here.
    #[arg(long, env = "NEUTRINO_HOST")]
    host: String,
    /// This host's VXLAN tunnel endpoint address.
    #[arg(long, env = "NEUTRINO_TUNNEL_IP")]
    tunnel_ip: std::net::IpAddr,
    /// Server URL (default: the network endpoint of the identity catalog). Credentials come
    /// from the `OS_*` variables of an openrc file.
    #[arg(long, env = "NEUTRINO_SERVER")]
    server: Option<String>,
    /// Read the `OS_*` credentials from this openrc file (`export OS_...=...` lines) instead
    /// of the environment: for a service manager, which cannot source one. A host
    /// credential's file (`neutrino host-credential create --host H --output FILE`:
    /// `OS_APPLICATION_CREDENTIAL_ID`/`_SECRET`) gives the agent a token for this host's
    /// agent calls only; an admin's openrc works too.
    #[arg(long, visible_alias = "credential-file", env = "NEUTRINO_OPENRC")]
    openrc: Option<PathBuf>,
    /// Prefix of the instance namespaces this agent owns (lets several agents share a machine).
    #[arg(long, default_value = "")]
    netns_prefix: String,
    /// UDP port of VXLAN.
    #[arg(long, default_value_t = 4789)]
    vxlan_port: u16,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 10)]
    report_interval: u64,
    /// Full reconcile interval in seconds (repairs drift even without changes).
    #[arg(long, default_value_t = 60)]
    resync_interval: u64,
    /// Service function chaining: milliseconds between the switch of a live chain change
    /// and the removal of its old paths (every other host of the chain switches meanwhile).
    #[arg(long, default_value_t = 300)]
    sfc_grace_ms: u64,
    /// Service function chaining: longest wait, in milliseconds, before a live chain change
    /// switches, for the other hosts of the chain to have its new paths.
    #[arg(long, default_value_t = 3000)]
    sfc_switch_wait_ms: u64,
    /// Write a JSON status (revision, reconciles, operations applied) here after each reconcile.
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Manage bridges, tunnels and taps inside this network namespace instead of the agent's
    /// own (several "hosts" on one machine, each a namespace; the agent keeps talking to the
    /// server from where it runs).
    #[arg(long)]
    dataplane_netns: Option<String>,
    /// Directory for the agent's files (DHCP servers: configuration, leases, pid files).
    #[arg(long, default_value = "/var/lib/neutrino/agent")]
    state_dir: PathBuf,
    /// Host interfaces of physical networks, for flat and VLAN provider networks:
    /// `physnet1:eth1,physnet2:eth2` (a flat network enslaves the interface to its bridge, a
    /// VLAN network the sub-interface `eth1.<id>`).
    #[arg(long, default_value = "")]
    physical_interface_mappings: String,
    /// This host is the L2 gateway device of this name (`device_name` of `openstack l2gw
    /// create --device name=NAME,...`): connections bridge their networks to its interfaces.
    #[arg(long)]
    l2gw_device: Option<String>,
    /// Program the hardware VTEP (a physical switch speaking OVSDB with the `hardware_vtep`
    /// schema) that is the L2 gateway device NAME, at `tcp:HOST:PORT`, `ssl:HOST:PORT` (TLS:
    /// see --vtep-ca-cert) or `unix:PATH`: `--vtep NAME=ssl:192.0.2.50:6640`. Repeatable; NAME is also the switch's
    /// `Physical_Switch` name.
    #[arg(long = "vtep", value_name = "NAME=REMOTE")]
    vteps: Vec<String>,
    /// Seconds between full reads of each --vtep switch's tables (a repair: between them the
    /// agent follows the switch through an OVSDB monitor).
    #[arg(long, default_value_t = 60)]
    vtep_resync_interval: u64,
    /// For `ssl:` --vtep remotes: PEM file of the CA certificate(s) the switches'
    /// certificates must chain to (as ovsdb-server's --ca-cert; their names are not checked).
    #[arg(long, value_name = "FILE", requires_all = ["vtep_cert", "vtep_key"])]
    vtep_ca_cert: Option<PathBuf>,
    /// For `ssl:` --vtep remotes: PEM file of the agent's certificate (chain), presented to
    /// the switches (as ovsdb-server's --certificate).
    #[arg(long, value_name = "FILE", requires_all = ["vtep_ca_cert", "vtep_key"])]
    vtep_cert: Option<PathBuf>,
    /// For `ssl:` --vtep remotes: PEM file of the private key of --vtep-cert (as
    /// ovsdb-server's --private-key).
    #[arg(long, value_name = "FILE", requires_all = ["vtep_ca_cert", "vtep_cert"])]
    vtep_key: Option<PathBuf>,
    /// The availability zone of this host (`openstack availability zone list --network`):
    /// networks and routers with `availability_zone_hints` are scheduled to hosts of those
    /// zones.
    #[arg(long, env = "NEUTRINO_AVAILABILITY_ZONE", default_value = "nova")]
    availability_zone: String,
    /// This host hosts BGP speakers: it is listed as a "BGP dynamic routing agent" (`openstack
    /// bgp dragent list`), new speakers are scheduled to it, and it runs `bird` (BIRD 2) for
    /// them: one session per peer, announcing the speaker's advertised routes.
    #[arg(long)]
    bgp: bool,
    /// BGP router id of the speakers this agent hosts (default: --tunnel-ip, when IPv4).
    #[arg(long)]
    bgp_router_id: Option<std::net::Ipv4Addr>,
    /// Serve the agent's Prometheus metrics (`GET /metrics`, no authentication) on this
    /// address: reconciles, operations, revision lag, ports by status, chain hop counters.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Encrypt host-to-host VXLAN: a userspace WireGuard device (boringtun over a TUN) in the
    /// dataplane namespace carries it, keyed with a key pair kept in --state-dir
    /// (`overlay-key`) whose public half goes to the other agents through the server. VXLAN
    /// arriving in clear is dropped: every agent of the deployment should use it.
    #[arg(long)]
    encrypt_overlay: bool,
    /// UDP port of the encrypted overlay (WireGuard) with --encrypt-overlay.
    #[arg(long, default_value_t = 51820)]
    overlay_port: u16,
    /// With --encrypt-overlay: replace this host's key pair at start (the old private key
    /// is kept as `overlay-key.old`); the peers take the new public key from the server.
    #[arg(long)]
    rotate_overlay_key: bool,
    /// With --l2gw-device: exchange MACs with the remote gateways of this gateway's border
    /// connections (UDP port 4792 on --tunnel-ip), so neither cloud has to create the other's
    /// remote MACs and the WAN need not flood. Both gateways of a border should use it.
    #[arg(long)]
    l2gw_exchange_macs: bool,
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let creds = host_credential::read_credentials(args.openrc.as_deref())?;
    if creds.application_credential.is_some() {
        tracing::info!(host = %args.host, "authenticating with a host credential");
    }
    if creds.insecure {
        tracing::warn!("OS_INSECURE: the server's certificate is not verified; unsafe");
    }
    let client = neutrino_agent::ServerClient::new(creds, args.server)?;
    let interface_mappings =
        neutrino_dataplane::provider::parse_interface_mappings(&args.physical_interface_mappings)
            .map_err(anyhow::Error::msg)
            .context("--physical-interface-mappings")?;
    let vteps: Vec<(String, String)> = args
        .vteps
        .iter()
        .map(|v| neutrino_agent::vtep::parse_spec(v))
        .collect::<Result<_, _>>()
        .context("--vtep")?;
    let vtep_tls = match (&args.vtep_ca_cert, &args.vtep_cert, &args.vtep_key) {
        (Some(ca), Some(cert), Some(key)) => {
            Some(neutrino_agent::vtep_tls::client_config(ca, cert, key)?)
        }
        _ => None,
    };
    if vtep_tls.is_none() {
        if let Some((name, _)) = vteps.iter().find(|(_, r)| r.starts_with("ssl:")) {
            anyhow::bail!(
                "--vtep {name}=ssl:...: TLS needs --vtep-ca-cert, --vtep-cert and --vtep-key"
            );
        }
    }
    let cfg = neutrino_agent::AgentConfig {
        host: neutrino_dataplane::HostConfig {
            host: args.host,
            tunnel_ip: args.tunnel_ip,
            vxlan_port: args.vxlan_port,
            netns_prefix: args.netns_prefix,
            interface_mappings,
            l2gw_device: args.l2gw_device.filter(|d| !d.is_empty()),
        },
        report_every: std::time::Duration::from_secs(args.report_interval.max(1)),
        resync_every: std::time::Duration::from_secs(args.resync_interval.max(1)),
        status_file: args.status_file,
        state_dir: args.state_dir,
        sfc_grace: std::time::Duration::from_millis(args.sfc_grace_ms),
        sfc_switch_wait: std::time::Duration::from_millis(args.sfc_switch_wait_ms),
        metrics: neutrino_agent::metrics::AgentMetrics::new(),
        availability_zone: args.availability_zone,
        bgp: args.bgp,
        bgp_router_id: args.bgp_router_id,
        dataplane_netns: args.dataplane_netns.clone(),
        vteps,
        vtep_tls,
        vtep_resync_every: std::time::Duration::from_secs(args.vtep_resync_interval.max(1)),
        encrypt_overlay: args.encrypt_overlay,
        overlay_port: args.overlay_port,
        rotate_overlay_key: args.rotate_overlay_key,
        l2gw_exchange_macs: args.l2gw_exchange_macs,
    };
    if args.encrypt_overlay && args.overlay_port == args.vxlan_port {
        anyhow::bail!("--overlay-port must differ from --vxlan-port");
    }
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (--metrics-listen)"))?;
        let metrics = cfg.metrics.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = metrics.render();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
        tracing::info!(%addr, "serving metrics");
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!(error = %err, "metrics listener failed");
            }
        });
    }
    tracing::info!(host = %cfg.host.host, tunnel_ip = %cfg.host.tunnel_ip, "agent starting");
    let kernel = std::sync::Arc::new(neutrino_agent::IpRoute2 {
        dataplane_netns: args.dataplane_netns,
    });
    neutrino_agent::run(cfg, client, kernel, shutdown()).await?;
    Ok(())
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory for the embedded database and `admin-openrc`.
    #[arg(long, env = "NEUTRINO_DATA_DIR", default_value = "./neutrino-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "NEUTRINO_LISTEN", default_value = "127.0.0.1:9696")]
    listen: SocketAddr,
    /// PostgreSQL URL (`postgres://user@host/db`); default: SQLite in the data directory.
    #[arg(long, env = "NEUTRINO_DATABASE_URL")]
    database_url: Option<String>,
    /// Password for the `admin` user when it is created (random otherwise); also written to
    /// `admin-openrc` when the admin already exists (e.g. a second server on PostgreSQL).
    #[arg(long, env = "NEUTRINO_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Base URL put in the identity catalog (default: the URL the client used).
    #[arg(long, env = "NEUTRINO_PUBLIC_URL")]
    public_url: Option<String>,
    /// Also serve `GET /metrics` (Prometheus) without authentication on this address, for a
    /// scraper; on the API address it needs an admin token.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the API over HTTPS with this PEM certificate chain (server certificate first,
    /// then intermediates); needs --tls-key. `admin-openrc` then names https://.
    #[arg(long, env = "NEUTRINO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "NEUTRINO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that clients need to verify --tls-cert, when it is not
    /// publicly trusted: written into `admin-openrc` as OS_CACERT.
    #[arg(long, env = "NEUTRINO_TLS_CA", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// VXLAN id range for tenant networks, `MIN:MAX`.
    #[arg(long, default_value = "1:16000000")]
    vni_range: String,
    /// Physical networks that accept flat and VLAN provider networks (comma separated).
    #[arg(long, default_value = "physnet1")]
    physical_networks: String,
    /// Development only: no authentication, every caller is admin.
    #[arg(long)]
    no_auth: bool,
    /// Seconds without a heartbeat after which an agent is dead (its routers and BGP speakers
    /// fail over).
    #[arg(long, default_value_t = 75)]
    agent_down_time: u32,
    /// Lifetime of the tokens this server issues, in seconds (Keystone's `[token]
    /// expiration`).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..))]
    token_expiration: u32,
    /// New routers are highly available unless the request says `ha: false`.
    #[arg(long)]
    l3_ha: bool,
    /// Also move legacy (non-HA) routers off dead agents; HA routers always move.
    #[arg(long)]
    allow_automatic_l3agent_failover: bool,
    /// Ports turn ACTIVE as soon as their own host plugs them, without waiting for the
    /// other hosts to apply them (the realisation barrier off; for comparison only).
    #[arg(long)]
    no_active_barrier: bool,
    /// New watches of the change feed admitted per second: when a whole site's agents start
    /// at once, the rest are answered 503 with a `Retry-After` spread over the next seconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    watch_admission_rate: u32,
    /// The DNS domain of ports' names (their `dns_assignment`, and what the DHCP servers
    /// hand out as the domain).
    #[arg(long, default_value = "openstacklocal")]
    dns_domain: String,
    /// A default quota limit, as `RESOURCE=N` (-1: unlimited), replacing the built-in one
    /// for projects without their own (Neutron's `[quotas] quota_<resource>`); repeatable.
    #[arg(long = "default-quota", value_name = "RESOURCE=N", value_parser = parse_quota)]
    default_quotas: Vec<(String, i64)>,
    /// An operator's policy file (oslo.policy syntax, YAML or JSON): its rules override
    /// Neutron's defaults. A rule that does not parse or names an undefined rule stops the
    /// server, naming the line.
    #[arg(long, env = "NEUTRINO_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Print the default policy as a commented YAML file (like oslopolicy-sample-generator)
    /// and exit.
    #[arg(long)]
    dump_default_policy: bool,
}

/// The policy in force: the defaults, with the operator's file on top.
fn load_policy(file: Option<&Path>) -> anyhow::Result<std::sync::Arc<neutrino_policy::Policy>> {
    let Some(path) = file else {
        return Ok(neutrino_app::default_policy());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy file {}", path.display()))?;
    let (policy, unknown) =
        neutrino_policy::Policy::with_overrides(&text, &path.display().to_string())?;
    if !unknown.is_empty() {
        tracing::warn!(
            file = %path.display(),
            names = %unknown.join(", "),
            "policy rules for actions this server does not have are ignored"
        );
    }
    tracing::info!(file = %path.display(), "policy file loaded");
    Ok(std::sync::Arc::new(policy))
}

/// `RESOURCE=N` of `--default-quota`: a quota resource and a limit from -1 up.
fn parse_quota(text: &str) -> Result<(String, i64), String> {
    let (resource, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not RESOURCE=N"))?;
    if !neutrino_app::QUOTA_RESOURCES
        .iter()
        .any(|(r, _)| *r == resource)
    {
        let known: Vec<&str> = neutrino_app::QUOTA_RESOURCES
            .iter()
            .map(|(r, _)| *r)
            .collect();
        return Err(format!(
            "{resource:?} has no quota; quota resources: {}",
            known.join(", ")
        ));
    }
    let limit: i64 = limit
        .parse()
        .ok()
        .filter(|l| *l >= -1)
        .ok_or_else(|| format!("{limit:?} is not a limit (-1 or more)"))?;
    Ok((resource.to_string(), limit))
}

fn parse_range(text: &str) -> anyhow::Result<(u32, u32)> {
    let (lo, hi) = text.split_once(':').context("range must be MIN:MAX")?;
    let (lo, hi): (u32, u32) = (lo.parse()?, hi.parse()?);
    if lo == 0 || lo > hi || hi > 16_777_215 {
        bail!("VXLAN range must satisfy 1 <= MIN <= MAX <= 16777215");
    }
    Ok((lo, hi))
}

/// Writes `admin-openrc`: the admin's credentials, `https://` when the API is served over
/// TLS, and `OS_CACERT` when the operator named the CA (`--tls-ca`).
fn write_openrc(
    dir: &Path,
    listen: &SocketAddr,
    public_url: Option<&str>,
    password: &str,
    tls: Option<&OpenrcTls>,
) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        listen.ip().to_string()
    };
    let host = if listen.is_ipv6() && !listen.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    let base = public_url.map(str::to_string).unwrap_or_else(|| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{}", listen.port())
    });
    let path = dir.join("admin-openrc");
    let mut text = format!(
        "# Credentials of the neutrino admin: source this file, then use the openstack CLI.\n\
         export OS_AUTH_URL={base}/v3\nexport OS_USERNAME=admin\nexport OS_PASSWORD='{password}'\n\
         export OS_PROJECT_NAME=admin\nexport OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_IDENTITY_API_VERSION=3\nexport OS_REGION_NAME=RegionOne\nexport OS_INTERFACE=public\n"
    );
    if let Some(ca) = tls.and_then(|t| t.cacert.as_deref()) {
        text.push_str(&format!("export OS_CACERT='{}'\n", ca.display()));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(path)
}

/// Whether an `admin-openrc` names an `OS_AUTH_URL` of another scheme than `scheme` (a
/// server that was given --tls-cert after its first start, or lost it).
fn openrc_names_other_scheme(text: &str, scheme: &str) -> bool {
    neutrino_keystone::parse_openrc(text)
        .iter()
        .find(|(name, _)| name == "OS_AUTH_URL")
        .is_some_and(|(_, url)| !url.starts_with(&format!("{scheme}://")))
}

/// What `admin-openrc` says about TLS.
struct OpenrcTls {
    /// `OS_CACERT`: the CA file, absolute.
    cacert: Option<PathBuf>,
}

/// On a TLS listener the scheme the client used is https, whatever a client's own
/// `X-Forwarded-Proto` says: the identity catalog's URLs are built from it.
async fn scheme_https(mut request: axum::extract::Request) -> axum::extract::Request {
    request.headers_mut().insert(
        "x-forwarded-proto",
        axum::http::HeaderValue::from_static("https"),
    );
    request
}

/// Serves the API on `listener` until SIGINT or SIGTERM, then gives open requests a moment.
async fn serve_api<L>(listener: L, router: axum::Router) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = stopping.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown().await;
        signal.notify_waiters();
    });
    // Agents' watch streams never end by themselves: give open requests a moment, then go.
    let grace = async {
        stopping.notified().await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    tokio::select! {
        served = server => served?,
        _ = grace => tracing::info!("stopped with watch streams still open"),
    }
    Ok(())
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    if args.dump_default_policy {
        print!("{}", neutrino_policy::dump_defaults_yaml());
        return Ok(());
    }
    // A broken policy file stops the server before it binds or writes anything.
    let policy = load_policy(args.policy_file.as_deref())?;
    // So does an unusable certificate, key or CA file.
    let tls_config = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let openrc_tls = match &tls_config {
        Some(_) => Some(OpenrcTls {
            cacert: match &args.tls_ca {
                Some(ca) => {
                    tls::load_certificates("--tls-ca", ca)?;
                    Some(std::path::absolute(ca).with_context(|| {
                        format!("--tls-ca {}: cannot make the path absolute", ca.display())
                    })?)
                }
                None => None,
            },
        }),
        None => None,
    };
    // Bind first: a server that cannot listen (address in use) must leave nothing behind, no
    // data directory, no database and no `admin-openrc` naming a port another process owns.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let listen = listener.local_addr()?;
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr} (--metrics-listen)"))?,
        ),
        None => None,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let url = match &args.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", args.data_dir.join("neutrino.db").display()),
    };
    let store = Store::open(&url).await.with_context(|| {
        format!(
            "opening database {}",
            url.split('@').next_back().unwrap_or("")
        )
    })?;
    let config = Config {
        vni_range: parse_range(&args.vni_range)?,
        physical_networks: args
            .physical_networks
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        public_url: args.public_url.clone(),
        agent_down_secs: i64::from(args.agent_down_time.max(1)),
        token_ttl_secs: i64::from(args.token_expiration),
        l3_ha: args.l3_ha,
        allow_automatic_l3agent_failover: args.allow_automatic_l3agent_failover,
        active_barrier: !args.no_active_barrier,
        watch_admission_rate: args.watch_admission_rate,
        default_quotas: args.default_quotas.iter().cloned().collect(),
        dns_domain: args.dns_domain.clone(),
        policy,
        ..Config::default()
    };
    let metrics = neutrino_api::Metrics::new();
    store.observe_commits(metrics.commit_observer());
    let app = App::new(store, config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let boot = app
        .bootstrap(args.admin_password.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let openrc = args.data_dir.join("admin-openrc");
    match &boot.password {
        Some(pw) => {
            write_openrc(
                &args.data_dir,
                &listen,
                args.public_url.as_deref(),
                pw,
                openrc_tls.as_ref(),
            )?;
        }
        None if !openrc.exists() => tracing::warn!(
            "the admin user exists but its password is unknown here: pass --admin-password to write {}",
            openrc.display()
        ),
        None => {
            let scheme = if tls_config.is_some() { "https" } else { "http" };
            let text = std::fs::read_to_string(&openrc).unwrap_or_default();
            if args.public_url.is_none() && openrc_names_other_scheme(&text, scheme) {
                tracing::warn!(
                    "{} was written for another scheme than {scheme}://: pass --admin-password to write it again",
                    openrc.display()
                );
            }
        }
    }
    let auth = if args.no_auth {
        tracing::warn!("--no-auth: every request is treated as admin; development only");
        AuthMode::NoAuth
    } else {
        AuthMode::Tokens
    };
    let scheme = if tls_config.is_some() {
        "https"
    } else {
        "http"
    };
    println!("neutrino server listening on {scheme}://{listen}");
    println!(
        "log in with the openstack CLI:  source {} && openstack network list",
        openrc.display()
    );
    tracing::info!(%listen, tls = tls_config.is_some(), database = if args.database_url.is_some() { "postgresql" } else { "sqlite" }, "serving");
    // Keep the change feed to its newest 100,000 commits; agents further behind resync.
    let compactor = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = compactor.compact_feed(100_000).await {
                tracing::warn!(error = %e.message, "feed compaction failed");
            }
        }
    });
    // Routers and BGP speakers leave dead agents: a few checks per agent down time (at most
    // every 10 s).
    let scheduler = app.clone();
    let every = u64::from(args.agent_down_time / 4).clamp(1, 10);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        loop {
            tick.tick().await;
            match scheduler.reschedule_routers().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(routers = n, "rescheduled routers"),
                Err(e) => tracing::warn!(error = %e.message, "router rescheduling failed"),
            }
            match scheduler.reschedule_bgp_speakers().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(speakers = n, "rescheduled BGP speakers"),
                Err(e) => tracing::warn!(error = %e.message, "BGP speaker rescheduling failed"),
            }
        }
    });
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving metrics");
        let router = neutrino_api::metrics_router(app.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!(error = %err, "metrics listener failed");
            }
        });
    }
    // Ports waiting at the realisation barrier pass when a lagging agent dies (or another
    // server recorded the acknowledgement): a sweep every second.
    let barrier = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = barrier.barrier_sweep().await {
                tracing::warn!(error = %e.message, "barrier sweep failed");
            }
        }
    });
    // Port pools (CNI): every pool topped up to its size, once a second.
    let pools = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = pools.refill_port_pools().await {
                tracing::warn!(error = %e.message, "port pool refill failed");
            }
        }
    });
    let router = neutrino_api::router(app, auth, metrics);
    match tls_config {
        Some(config) => {
            let router = router.layer(axum::middleware::map_request(scheme_https));
            let listener = tls::TlsListener::new(listener, config, tls::HANDSHAKE_TIMEOUT)?;
            serve_api(listener, router).await
        }
        None => serve_api(listener, router).await,
    }
}

async fn shutdown() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// Colour codes only for a person reading a terminal, never in a redirected log file.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> anyhow::Result<()> {
    let argv = config_file::with_config_file(&Cli::command(), std::env::args_os().collect())?;
    let cli = Cli::parse_from(argv);
    init_logging(cli.log_format);
    if let Command::OverlayDevice { name } = &cli.command {
        // Before any other thread: boringtun blocks SIGTERM in the thread that creates the
        // device and reads it from a signalfd, which only works if no thread can take it.
        return Ok(neutrino_agent::overlay::run_device(name)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Server(args) => serve(args).await,
            Command::Agent(args) => agent(args).await,
            Command::Bench(args) => {
                let report = neutrino_bench::run(args).await?;
                print!("{report}");
                Ok(())
            }
            // Run above, without a runtime.
            Command::OverlayDevice { .. } => Ok(()),
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "neutrino",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Man { dir } => write_man_pages(&dir),
            Command::HostCredential(args) => host_credential::run(args).await,
            Command::CheckStore(args) => {
                let url = match &args.database_url {
                    Some(url) => url.clone(),
                    None => {
                        let path = args.data_dir.join("neutrino.db");
                        anyhow::ensure!(path.exists(), "no database at {}", path.display());
                        format!("sqlite://{}", path.display())
                    }
                };
                let store = Store::open(&url).await.context("opening the database")?;
                let problems = neutrino_app::consistency::check_store(&store).await?;
                store.close().await;
                for p in &problems {
                    println!("{p}");
                }
                anyhow::ensure!(problems.is_empty(), "store: {} problems", problems.len());
                println!("store consistent");
                Ok(())
            }
            Command::Storm(args) => {
                let json = args.json;
                let report = neutrino_bench::run_storm(args).await?;
                if json {
                    println!("{}", report.to_json());
                } else {
                    print!("{report}");
                }
                if !report.passed() {
                    bail!(
                        "storm: {} of {} agents converged, {} probe errors",
                        report.converged,
                        report.agents,
                        report.probe_errors
                    );
                }
                Ok(())
            }
            Command::Fuzz(args) => {
                let report = neutrino_bench::run_fuzz(args).await?;
                print!("{report}");
                if !report.passed() {
                    bail!(
                        "fuzz: {} findings, server alive after: {}",
                        report.findings_total,
                        report.alive_after
                    );
                }
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vtep_tls_files_come_together() {
        use clap::Parser as _;
        let base = [
            "neutrino",
            "agent",
            "--host",
            "h1",
            "--tunnel-ip",
            "192.0.2.1",
        ];
        let parse = |extra: &[&str]| {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Agent(a) => (a.vtep_ca_cert, a.vtep_cert, a.vtep_key),
                _ => unreachable!("an agent command"),
            })
        };
        let all = [
            "--vtep=sw1=ssl:192.0.2.50:6640",
            "--vtep-ca-cert=ca.pem",
            "--vtep-cert=agent.pem",
            "--vtep-key=agent.key",
        ];
        let (ca, cert, key) = parse(&all).unwrap();
        assert_eq!(ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(cert, Some(PathBuf::from("agent.pem")));
        assert_eq!(key, Some(PathBuf::from("agent.key")));
        assert!(
            parse(&all[..2]).is_err(),
            "a CA without a certificate and key"
        );
        assert!(parse(&all[..3]).is_err(), "a certificate without its key");
        assert_eq!(parse(&[]).unwrap(), (None, None, None));
    }

    #[test]
    fn an_openrc_of_the_other_scheme_is_noticed() {
        let http = "export OS_AUTH_URL=http://127.0.0.1:9696/v3\nexport OS_USERNAME=admin\n";
        let https = "export OS_AUTH_URL=https://127.0.0.1:9696/v3\n";
        assert!(openrc_names_other_scheme(http, "https"));
        assert!(!openrc_names_other_scheme(http, "http"));
        assert!(openrc_names_other_scheme(https, "http"));
        assert!(!openrc_names_other_scheme(https, "https"));
        assert!(!openrc_names_other_scheme("", "https"));
    }

    #[test]
    fn admin_openrc_names_https_and_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:9696".parse().unwrap();
        let tls = OpenrcTls {
            cacert: Some(PathBuf::from("/etc/neutrino/ca.pem")),
        };
        let path = write_openrc(dir.path(), &listen, None, "pw", Some(&tls)).unwrap();
        let vars = neutrino_keystone::parse_openrc(&std::fs::read_to_string(&path).unwrap());
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("OS_AUTH_URL"), Some("https://127.0.0.1:9696/v3"));
        assert_eq!(get("OS_CACERT"), Some("/etc/neutrino/ca.pem"));
        let path = write_openrc(dir.path(), &listen, None, "pw", None).unwrap();
        let vars = neutrino_keystone::parse_openrc(&std::fs::read_to_string(&path).unwrap());
        assert!(vars
            .iter()
            .any(|(n, v)| n == "OS_AUTH_URL" && v == "http://127.0.0.1:9696/v3"));
        assert!(!vars.iter().any(|(n, _)| n == "OS_CACERT"));
    }
}
