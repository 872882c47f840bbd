//! Hardware VTEPs against a real `ovsdb-server` with the `hardware_vtep` schema (Debian's
//! `openvswitch-common` and `openvswitch-vtep`): the agent's sync writes logical switches,
//! VLAN bindings, remote MACs and flooding as ports come and go, its monitor brings what
//! the switch learns locally without a re-read, a lost connection is noticed, and
//! everything is replayed into a database that lost it. Skips, saying why, when the tools
//! or the schema are missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use neutrino_agent::ovsdb::{Ovsdb, OvsdbError};
use neutrino_agent::vtep::{Change, Vtep};
use neutrino_dataplane::Cluster;
use serde_json::{json, Value};

const SCHEMA: &str = "/usr/share/openvswitch/vtep.ovsschema";
const NET: &str = "11111111-1111-4111-8111-111111111111";
const GW: &str = "33333333-3333-4333-8333-333333333333";
const CONN: &str = "44444444-4444-4444-8444-444444444444";

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

struct Server {
    dir: PathBuf,
    server: PathBuf,
    child: Option<Child>,
    /// TLS as well: the server's key, certificate and CA certificate files (`pssl:` on an
    /// ephemeral port of 127.0.0.1, read back from the log into `ssl_port`).
    ssl: Option<[PathBuf; 3]>,
    ssl_port: Option<u16>,
}

impl Server {
    fn socket(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    fn remote(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// Creates a fresh database with switch `sw1` (tunnel IP 192.0.2.100, ports p1, p2).
    fn create(dir: PathBuf, tool_path: &Path, server: PathBuf) -> Server {
        Server::create_with(dir, tool_path, server, None)
    }

    fn create_with(
        dir: PathBuf,
        tool_path: &Path,
        server: PathBuf,
        ssl: Option<[PathBuf; 3]>,
    ) -> Server {
        let db = dir.join("vtep.db");
        let _ = std::fs::remove_file(&db);
        let st = Command::new(tool_path)
            .args(["create", db.to_str().unwrap(), SCHEMA])
            .status()
            .unwrap();
        assert!(st.success(), "ovsdb-tool create failed");
        let mut s = Server {
            dir,
            server,
            child: None,
            ssl,
            ssl_port: None,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let log = self.dir.join("ovsdb-server.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(&self.server);
        if let Some([key, cert, ca]) = &self.ssl {
            cmd.arg("--remote=pssl:0:127.0.0.1")
                .arg(format!("--private-key={}", key.display()))
                .arg(format!("--certificate={}", cert.display()))
                .arg(format!("--ca-cert={}", ca.display()))
                .arg(format!("--log-file={}", log.display()));
        }
        let child = cmd
            .current_dir(&self.dir)
            .arg(format!("--remote=punix:{}", self.socket().display()))
            .arg(format!("--unixctl={}", self.dir.join("ctl").display()))
            .arg("--no-chdir")
            .arg(self.dir.join("vtep.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            let port = std::fs::read_to_string(&log).ok().and_then(|text| {
                let (_, rest) = text.split_once("listening on port ")?;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            });
            self.ssl_port = port;
            if self.socket().exists() && (self.ssl.is_none() || port.is_some()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("ovsdb-server did not create its socket (or did not log its SSL port)");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a switch writes about itself into a fresh database: `Physical_Switch` `sw1` with
/// its ports.
async fn add_switch(remote: &str) {
    let mut db = Ovsdb::connect(remote).await.unwrap();
    db.transact(
        "hardware_vtep",
        &[
            json!({"op": "insert", "table": "Physical_Port", "uuid-name": "p1",
                   "row": {"name": "p1"}}),
            json!({"op": "insert", "table": "Physical_Port", "uuid-name": "p2",
                   "row": {"name": "p2"}}),
            json!({"op": "insert", "table": "Physical_Switch", "uuid-name": "sw",
                   "row": {"name": "sw1", "tunnel_ips": "192.0.2.100",
                           "ports": ["set", [["named-uuid", "p1"], ["named-uuid", "p2"]]]}}),
            // Switches hang off the root table `Global` (what `vtep-ctl add-ps` does).
            json!({"op": "insert", "table": "Global",
                   "row": {"switches": ["named-uuid", "sw"]}}),
        ],
    )
    .await
    .unwrap();
}

/// The switch learns `mac` on the network's logical switch behind port p1.
async fn learn_locally(remote: &str, mac: &str) {
    let mut db = Ovsdb::connect(remote).await.unwrap();
    db.transact(
        "hardware_vtep",
        &[
            json!({"op": "insert", "table": "Physical_Locator", "uuid-name": "me",
                   "row": {"dst_ip": "192.0.2.100", "encapsulation_type": "vxlan_over_ipv4"}}),
            json!({"op": "insert", "table": "Ucast_Macs_Local",
                   "row": {"MAC": mac, "ipaddr": "",
                           "logical_switch": ["uuid", ls_uuid(remote).await.unwrap()],
                           "locator": ["named-uuid", "me"]}}),
        ],
    )
    .await
    .unwrap();
}

async fn select(remote: &str, table: &str) -> Vec<Value> {
    let mut db = Ovsdb::connect(remote).await.unwrap();
    let r = db
        .transact(
            "hardware_vtep",
            &[json!({"op": "select", "table": table, "where": []})],
        )
        .await
        .unwrap();
    r[0]["rows"].as_array().cloned().unwrap_or_default()
}

async fn ls_uuid(remote: &str) -> Option<String> {
    select(remote, "Logical_Switch")
        .await
        .iter()
        .find(|r| r["name"] == NET)
        .map(|r| r["_uuid"][1].as_str().unwrap().to_string())
}

/// The switch's state in comparable form: logical switches (name, key), bindings per port
/// (vlan, logical switch name), remote MACs (MAC, ip, locator ip) and flood locators.
async fn tables(remote: &str) -> Value {
    let lss = select(remote, "Logical_Switch").await;
    let ls_name = |u: &Value| {
        lss.iter()
            .find(|r| &r["_uuid"] == u)
            .map(|r| r["name"].clone())
            .unwrap_or(Value::Null)
    };
    let locs = select(remote, "Physical_Locator").await;
    let loc_ip = |u: &Value| {
        locs.iter()
            .find(|r| &r["_uuid"] == u)
            .map(|r| r["dst_ip"].clone())
            .unwrap_or(Value::Null)
    };
    let mut ports: Vec<Value> = select(remote, "Physical_Port")
        .await
        .iter()
        .map(|p| {
            let b: Vec<Value> = p["vlan_bindings"][1]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| json!([kv[0], ls_name(&kv[1])]))
                .collect();
            json!([p["name"], b])
        })
        .collect();
    ports.sort_by_key(|v| v.to_string());
    let mut ucast: Vec<Value> = select(remote, "Ucast_Macs_Remote")
        .await
        .iter()
        .map(|m| {
            json!([
                ls_name(&m["logical_switch"]),
                m["MAC"],
                m["ipaddr"],
                loc_ip(&m["locator"])
            ])
        })
        .collect();
    ucast.sort_by_key(|v| v.to_string());
    let sets = select(remote, "Physical_Locator_Set").await;
    let mut mcast: Vec<Value> = select(remote, "Mcast_Macs_Remote")
        .await
        .iter()
        .map(|m| {
            let set = sets
                .iter()
                .find(|s| s["_uuid"] == m["locator_set"])
                .unwrap();
            let mut ips: Vec<String> = match &set["locators"][0] {
                v if v == "set" => set["locators"][1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| loc_ip(l).as_str().unwrap().to_string())
                    .collect(),
                _ => vec![loc_ip(&set["locators"]).as_str().unwrap().to_string()],
            };
            ips.sort();
            json!([ls_name(&m["logical_switch"]), m["MAC"], ips])
        })
        .collect();
    mcast.sort_by_key(|v| v.to_string());
    let lss: Vec<Value> = lss
        .iter()
        .map(|r| json!([r["name"], r["tunnel_key"]]))
        .collect();
    json!({"switches": lss, "ports": ports, "ucast": ucast, "mcast": mcast})
}

fn cluster() -> Cluster {
    Cluster::from_snapshot(&json!({"revision": 1, "resources": {
        "agent": [
            {"id": "a1", "host": "h1", "configurations": {"tunnel_ip": "192.0.2.1"}},
            {"id": "a2", "host": "h2", "configurations": {"tunnel_ip": "192.0.2.2"}},
        ],
        "network": [{"id": NET, "name": "n", "provider:network_type": "vxlan",
                     "provider:segmentation_id": 5001}],
        "l2_gateway": [{"id": GW, "name": "gw", "devices": [{"device_name": "sw1",
            "interfaces": [{"name": "p1", "segmentation_id": []}]}]}],
        "l2_gateway_connection": [{"id": CONN, "l2_gateway_id": GW, "network_id": NET,
                                   "segmentation_id": 100}],
        "port": [port("p-a", "fa:16:3e:00:00:01", "10.0.0.11", "h1")],
    }}))
}

fn port(id: &str, mac: &str, ip: &str, host: &str) -> Value {
    json!({"id": id, "network_id": NET, "mac_address": mac, "binding:host_id": host,
           "device_owner": "compute:nova",
           "fixed_ips": [{"subnet_id": "s", "ip_address": ip}]})
}

fn ls() -> String {
    NET.to_string()
}

/// The next change the monitor brings, within a few seconds.
async fn next_change(vtep: &mut Vtep) -> Change {
    tokio::time::timeout(std::time::Duration::from_secs(5), vtep.changed())
        .await
        .expect("the monitor reports the change")
}

/// `vtep-ctl` on the database at `remote`.
fn vtep_ctl(remote: &str, args: &[&str]) {
    let Some(ctl) = tool("vtep-ctl") else {
        panic!("vtep-ctl missing (apt-get install openvswitch-vtep)");
    };
    let out = Command::new(ctl)
        .arg(format!("--db={remote}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vtep-ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tools the tests need, or `None` after printing why the test skips: `ovsdb-server`
/// and `ovsdb-tool`, the vtep schema and `vtep-ctl`.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let (Some(server), Some(tool_path)) = (tool("ovsdb-server"), tool("ovsdb-tool")) else {
        eprintln!(
            "SKIP: ovsdb-server/ovsdb-tool not installed (apt-get install openvswitch-common)"
        );
        return None;
    };
    if !Path::new(SCHEMA).exists() || tool("vtep-ctl").is_none() {
        eprintln!("SKIP: {SCHEMA} or vtep-ctl missing (apt-get install openvswitch-vtep)");
        return None;
    }
    Some((server, tool_path))
}

/// A fresh `ovsdb-server` with the vtep schema and switch `sw1`, in a temp directory named
/// after `test`, and its remote; `None` when the test skips ([`tools`]).
async fn switch_server(test: &str) -> Option<(Server, String)> {
    let (server, tool_path) = tools()?;
    let dir = std::env::temp_dir().join(format!("neutrino-vtep-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let srv = Server::create(dir, &tool_path, server);
    let remote = srv.remote();
    add_switch(&remote).await;
    Some((srv, remote))
}

#[tokio::test]
async fn vtep_follows_the_cluster_and_replays() {
    let Some((mut srv, remote)) = switch_server("sync").await else {
        return;
    };

    let mut c = cluster();
    // No periodic re-read during the test: everything after the first read comes from the
    // monitor.
    let mut vtep = Vtep::new("sw1", &remote).resync_every(std::time::Duration::from_secs(3600));
    assert!(vtep.due());
    let first = vtep.sync(&c).await.unwrap();
    assert!(first.written > 0);
    assert_eq!(first.tunnel_ips, vec!["192.0.2.100".to_string()]);
    let connected = json!({
        "switches": [[ls(), 5001]],
        "ports": [["p1", [[100, ls()]]], ["p2", []]],
        "ucast": [[ls(), "fa:16:3e:00:00:01", "10.0.0.11", "192.0.2.1"]],
        "mcast": [[ls(), "unknown-dst", ["192.0.2.1"]]],
    });
    assert_eq!(tables(&remote).await, connected);
    // Nothing to do the second time: the replica already has what was written.
    assert_eq!(vtep.sync(&c).await.unwrap().written, 0);
    assert_eq!(vtep.full_reads(), 1);

    // A port on another host: its MAC, and flooding to both hosts.
    c.put(
        "port",
        "p-b",
        Some(&port("p-b", "fa:16:3e:00:00:02", "10.0.0.12", "h2")),
    );
    vtep.sync(&c).await.unwrap();
    let two = json!({
        "switches": [[ls(), 5001]],
        "ports": [["p1", [[100, ls()]]], ["p2", []]],
        "ucast": [[ls(), "fa:16:3e:00:00:01", "10.0.0.11", "192.0.2.1"],
                  [ls(), "fa:16:3e:00:00:02", "10.0.0.12", "192.0.2.2"]],
        "mcast": [[ls(), "unknown-dst", ["192.0.2.1", "192.0.2.2"]]],
    });
    assert_eq!(tables(&remote).await, two);

    // The switch learns a MAC behind p1: the monitor brings it, reported for the network.
    learn_locally(&remote, "00:00:5e:00:53:01").await;
    assert!(matches!(next_change(&mut vtep).await, Change::Updated));
    let synced = vtep.sync(&c).await.unwrap();
    assert_eq!(json!(synced.learned), json!({NET: ["00:00:5e:00:53:01"]}));
    assert_eq!(synced.written, 0);
    assert_eq!(vtep.full_reads(), 1);

    // The first port goes away.
    c.put("port", "p-a", None);
    vtep.sync(&c).await.unwrap();
    let after_delete = json!({
        "switches": [[ls(), 5001]],
        "ports": [["p1", [[100, ls()]]], ["p2", []]],
        "ucast": [[ls(), "fa:16:3e:00:00:02", "10.0.0.12", "192.0.2.2"]],
        "mcast": [[ls(), "unknown-dst", ["192.0.2.2"]]],
    });
    assert_eq!(tables(&remote).await, after_delete);

    // The switch's server restarts with an empty database (a replaced switch): the monitor
    // notices the lost connection, a sync meanwhile fails, the one after replays everything.
    srv.stop();
    assert!(matches!(next_change(&mut vtep).await, Change::Lost(_)));
    // The agent leaves a failed switch alone for a while.
    assert!(!vtep.due());
    assert!(vtep.sync(&c).await.is_err());
    assert!(!vtep.due());
    let db = srv.dir.join("vtep.db");
    std::fs::remove_file(&db).unwrap();
    let st = Command::new(tool("ovsdb-tool").unwrap())
        .args(["create", db.to_str().unwrap(), SCHEMA])
        .status()
        .unwrap();
    assert!(st.success());
    srv.start();
    add_switch(&remote).await;
    assert!(tables(&remote).await["switches"] == json!([]));
    vtep.sync(&c).await.unwrap();
    assert_eq!(tables(&remote).await, after_delete);
    assert_eq!(vtep.full_reads(), 2);
    learn_locally(&remote, "00:00:5e:00:53:02").await;
    assert!(matches!(next_change(&mut vtep).await, Change::Updated));

    // The connection is deleted: the logical switch, its binding and MACs go.
    c.put("l2_gateway_connection", CONN, None);
    vtep.sync(&c).await.unwrap();
    assert_eq!(
        tables(&remote).await,
        json!({"switches": [], "ports": [["p1", []], ["p2", []]], "ucast": [], "mcast": []})
    );
}

/// What the switch learns comes through the monitor: a MAC `vtep-ctl` adds to
/// `Ucast_Macs_Local` (and a burst of them) is seen without a sync or a re-read, with the
/// periodic re-read an hour away; rows someone else deletes are rewritten from the replica.
#[tokio::test]
async fn the_monitor_brings_what_the_switch_learns() {
    let Some((_srv, remote)) = switch_server("mon").await else {
        return;
    };
    let c = cluster();
    let mut vtep = Vtep::new("sw1", &remote).resync_every(std::time::Duration::from_secs(3600));
    let first = vtep.sync(&c).await.unwrap();
    assert!(first.written > 0);
    assert_eq!(json!(first.learned), json!({NET: []}));
    assert_eq!(vtep.full_reads(), 1);

    vtep_ctl(
        &remote,
        &["add-ucast-local", NET, "00:00:5e:00:53:11", "192.0.2.100"],
    );
    assert!(matches!(next_change(&mut vtep).await, Change::Updated));
    let synced = vtep.sync(&c).await.unwrap();
    assert_eq!(json!(synced.learned), json!({NET: ["00:00:5e:00:53:11"]}));
    assert_eq!((synced.written, vtep.full_reads()), (0, 1));

    // A burst: one change.
    for mac in ["00:00:5e:00:53:12", "00:00:5e:00:53:13"] {
        vtep_ctl(&remote, &["add-ucast-local", NET, mac, "192.0.2.100"]);
    }
    vtep_ctl(&remote, &["del-ucast-local", NET, "00:00:5e:00:53:11"]);
    assert!(matches!(next_change(&mut vtep).await, Change::Updated));
    let synced = vtep.sync(&c).await.unwrap();
    assert_eq!(
        json!(synced.learned),
        json!({NET: ["00:00:5e:00:53:12", "00:00:5e:00:53:13"]})
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(600), vtep.changed())
            .await
            .is_err(),
        "nothing more changed"
    );

    // Someone deletes a remote MAC the agent wrote: the replica shows it gone, and the
    // next sync writes it again.
    vtep_ctl(&remote, &["del-ucast-remote", NET, "fa:16:3e:00:00:01"]);
    assert!(matches!(next_change(&mut vtep).await, Change::Updated));
    assert!(vtep.sync(&c).await.unwrap().written > 0);
    assert_eq!(
        tables(&remote).await["ucast"],
        json!([[ls(), "fa:16:3e:00:00:01", "10.0.0.11", "192.0.2.1"]])
    );
    assert_eq!(vtep.full_reads(), 1);
}

/// The periodic full read replaces the replica (and the sync still plans nothing to do).
#[tokio::test]
async fn the_periodic_resync_reads_the_switch_whole() {
    let Some((_srv, remote)) = switch_server("resync").await else {
        return;
    };
    let c = cluster();
    let every = std::time::Duration::from_millis(300);
    let mut vtep = Vtep::new("sw1", &remote).resync_every(every);
    assert!(vtep.sync(&c).await.unwrap().written > 0);
    assert_eq!(vtep.full_reads(), 1);
    // Not yet due: the replica is used as it is.
    assert_eq!(vtep.sync(&c).await.unwrap().written, 0);
    assert_eq!(vtep.full_reads(), 1);
    assert!(vtep.deadline() > std::time::Instant::now());
    tokio::time::sleep(every).await;
    assert!(vtep.deadline() <= std::time::Instant::now());
    assert_eq!(vtep.sync(&c).await.unwrap().written, 0);
    assert_eq!(vtep.full_reads(), 2);
    // The monitor had brought everything: the re-read found nothing new.
    assert_eq!(vtep.drifts(), 0);
}

/// `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `NAME.pem` / `NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// A certificate `NAME.pem` with key `NAME.key` signed by CA `ca`, for `usage` (serverAuth,
/// clientAuth). No subject alternative names: as `ovs-pki` certificates, it names the
/// switch, not its address.
fn make_cert(dir: &Path, ca: &str, name: &str, usage: &str) {
    let (key, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// An `ssl:` remote: the sync and the monitor work over TLS with the switch's certificate
/// verified against the CA and the agent's own presented; with another CA the sync fails
/// cleanly (a TLS error, the switch backed off), and so does it with an agent certificate
/// the switch does not trust, or an `ssl:` remote without TLS settings.
#[tokio::test]
async fn vtep_over_ssl() {
    let Some((server, tool_path)) = tools() else {
        return;
    };
    if tool("openssl").is_none() {
        eprintln!("SKIP: openssl missing (apt-get install openssl)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("neutrino-vtep-ssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_ca(&dir, "ca");
    make_ca(&dir, "otherca");
    make_cert(&dir, "ca", "switch", "serverAuth");
    make_cert(&dir, "ca", "agent", "clientAuth");
    make_cert(&dir, "otherca", "stranger", "clientAuth");
    let files = [
        dir.join("switch.key"),
        dir.join("switch.pem"),
        dir.join("ca.pem"),
    ];
    let srv = Server::create_with(dir.clone(), &tool_path, server, Some(files));
    let local = srv.remote();
    add_switch(&local).await;
    let ssl = format!("ssl:127.0.0.1:{}", srv.ssl_port.unwrap());

    let tls = neutrino_agent::vtep_tls::client_config(
        &dir.join("ca.pem"),
        &dir.join("agent.pem"),
        &dir.join("agent.key"),
    )
    .unwrap();
    let c = cluster();
    let mut vtep = Vtep::new("sw1", &ssl)
        .tls(Some(tls))
        .resync_every(std::time::Duration::from_secs(3600));
    let first = vtep.sync(&c).await.unwrap();
    assert!(first.written > 0);
    assert_eq!(first.tunnel_ips, vec!["192.0.2.100".to_string()]);
    assert_eq!(
        tables(&local).await,
        json!({
            "switches": [[ls(), 5001]],
            "ports": [["p1", [[100, ls()]]], ["p2", []]],
            "ucast": [[ls(), "fa:16:3e:00:00:01", "10.0.0.11", "192.0.2.1"]],
            "mcast": [[ls(), "unknown-dst", ["192.0.2.1"]]],
        })
    );
    // The monitor over TLS.
    vtep_ctl(
        &local,
        &["add-ucast-local", NET, "00:00:5e:00:53:21", "192.0.2.100"],
    );
    assert!(matches!(next_change(&mut vtep).await, Change::Updated));
    let synced = vtep.sync(&c).await.unwrap();
    assert_eq!(json!(synced.learned), json!({NET: ["00:00:5e:00:53:21"]}));
    assert_eq!(synced.written, 0);

    // A CA that did not sign the switch's certificate: an error, and the backoff.
    let wrong = neutrino_agent::vtep_tls::client_config(
        &dir.join("otherca.pem"),
        &dir.join("agent.pem"),
        &dir.join("agent.key"),
    )
    .unwrap();
    let mut untrusting = Vtep::new("sw1", &ssl).tls(Some(wrong));
    let err = untrusting.sync(&c).await.unwrap_err();
    assert!(matches!(&err, OvsdbError::Tls(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!untrusting.due());

    // An agent certificate the switch's CA did not sign: the switch refuses it.
    let stranger = neutrino_agent::vtep_tls::client_config(
        &dir.join("ca.pem"),
        &dir.join("stranger.pem"),
        &dir.join("stranger.key"),
    )
    .unwrap();
    let mut refused = Vtep::new("sw1", &ssl).tls(Some(stranger));
    assert!(refused.sync(&c).await.is_err());
    assert!(!refused.due());

    // No TLS settings for an ssl: remote.
    let mut bare = Vtep::new("sw1", &ssl);
    assert!(matches!(bare.sync(&c).await, Err(OvsdbError::Tls(_))));

    // The switch still has what the first agent wrote, nothing of the others.
    assert_eq!(tables(&local).await["ucast"].as_array().unwrap().len(), 1);
    drop(srv);
}
