//! A minimal OVSDB (RFC 7047) JSON-RPC client over TCP, TLS (`ssl:`, see
//! [`crate::vtep_tls`]) or a unix socket: `transact`,
//! `monitor` with its `update` notifications, and a [`Replica`] of the monitored tables.
//!
//! Each connection is served by its own task, which owns the socket: it answers the
//! server's `echo` keep-alives at once (also while the caller is busy elsewhere), hands each
//! reply to the call that waits for it, and queues `update` notifications for
//! [`Ovsdb::next_update`]. Every message the task receives is numbered, so a caller can tell
//! whether a notification arrived before or after a request was sent or answered. The task
//! ends, closing the socket, when the [`Ovsdb`] is dropped or the server hangs up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// OVSDB client failures.
#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    /// The remote is none of `tcp:HOST:PORT`, `ssl:HOST:PORT` or `unix:PATH`.
    #[error("bad OVSDB remote {0:?}: expected tcp:HOST:PORT, ssl:HOST:PORT or unix:PATH")]
    Remote(String),
    /// Connecting, reading or writing failed, or the server closed the connection.
    #[error("OVSDB connection: {0}")]
    Io(#[from] std::io::Error),
    /// An `ssl:` remote without a TLS configuration, or a TLS handshake that failed (the
    /// server's certificate does not verify, the server refused ours, ...).
    #[error("OVSDB TLS: {0}")]
    Tls(String),
    /// The server sent something that is not JSON-RPC.
    #[error("OVSDB protocol: {0}")]
    Protocol(String),
    /// The server answered the request with an error, or an operation failed.
    #[error("OVSDB error: {0}")]
    Server(String),
    /// No answer in time.
    #[error("OVSDB server did not answer within {0:?}")]
    Timeout(Duration),
}

/// A byte stream the connection task can own: TCP, TLS over TCP, or a unix socket.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One `update` notification (RFC 7047 §4.1.6).
#[derive(Debug, Clone)]
pub struct Update {
    /// The number of the message on the connection (1 for the first the server sent).
    pub seq: u64,
    /// The monitor's id, as given to [`Ovsdb::monitor`].
    pub monitor: Value,
    /// The `<table-updates>`.
    pub tables: Value,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The `result`.
    pub result: Value,
    /// How many messages the server had sent before the request went out: notifications
    /// numbered above this arrived after it.
    pub sent_after: u64,
    /// The number of the reply's own message.
    pub seq: u64,
}

struct Request {
    id: u64,
    text: String,
    reply: oneshot::Sender<Result<Reply, OvsdbError>>,
}

/// One connection to an OVSDB server.
pub struct Ovsdb {
    requests: mpsc::UnboundedSender<Request>,
    updates: mpsc::UnboundedReceiver<Update>,
    next_id: u64,
    timeout: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ovsdb {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long connecting (and a TLS handshake) may take: the agent's loop waits for its
/// switches.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Ovsdb {
    /// Connects to `tcp:HOST:PORT` or `unix:PATH` (an `ssl:` remote needs
    /// [`Ovsdb::connect_with`]).
    pub async fn connect(remote: &str) -> Result<Ovsdb, OvsdbError> {
        Ovsdb::connect_with(remote, None).await
    }

    /// Connects to `tcp:HOST:PORT`, `unix:PATH`, or `ssl:HOST:PORT` with `tls` (see
    /// [`crate::vtep_tls`]).
    pub async fn connect_with(
        remote: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Ovsdb, OvsdbError> {
        let timeout = CONNECT_TIMEOUT;
        let io: Box<dyn Io> = if let Some(addr) = remote.strip_prefix("tcp:") {
            Box::new(tcp(addr).await?)
        } else if let Some(addr) = remote.strip_prefix("ssl:") {
            let Some(config) = tls else {
                return Err(OvsdbError::Tls(format!(
                    "{remote}: no TLS configuration (a CA certificate, a certificate and a key)"
                )));
            };
            let host = addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                .filter(|h| !h.is_empty())
                .ok_or_else(|| OvsdbError::Remote(remote.to_string()))?;
            // Only the certificate's chain is checked, not its names (see `vtep_tls`), but
            // rustls wants a name for the handshake.
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| OvsdbError::Tls(format!("{remote}: {e}")))?;
            let stream = tcp(addr).await?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
                .await
                .map_err(|_| OvsdbError::Timeout(timeout))?
                .map_err(|e| OvsdbError::Tls(format!("{remote}: {e}")))?;
            Box::new(tls)
        } else if let Some(path) = remote.strip_prefix("unix:") {
            Box::new(tokio::net::UnixStream::connect(path).await?)
        } else {
            return Err(OvsdbError::Remote(remote.to_string()));
        };
        let (requests, rx) = mpsc::unbounded_channel();
        let (tx, updates) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(io, rx, tx));
        Ok(Ovsdb {
            requests,
            updates,
            next_id: 0,
            timeout: Duration::from_secs(10),
            task,
        })
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Reply, OvsdbError> {
        self.next_id += 1;
        let id = self.next_id;
        let text = json!({"method": method, "params": params, "id": id}).to_string();
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { id, text, reply })
            .map_err(|_| closed())?;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| OvsdbError::Timeout(timeout))?
            .map_err(|_| closed())?
    }

    /// Sends one request and returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, OvsdbError> {
        Ok(self.request(method, params).await?.result)
    }

    /// `transact` on `db`: the results of `ops`, or the first failed operation's error.
    pub async fn transact(&mut self, db: &str, ops: &[Value]) -> Result<Vec<Value>, OvsdbError> {
        Ok(self.transact_reply(db, ops).await?.0)
    }

    /// [`Ovsdb::transact`], with the reply's numbering.
    pub async fn transact_reply(
        &mut self,
        db: &str,
        ops: &[Value],
    ) -> Result<(Vec<Value>, Reply), OvsdbError> {
        let mut params = vec![json!(db)];
        params.extend(ops.iter().cloned());
        let reply = self.request("transact", Value::Array(params)).await?;
        let results = reply
            .result
            .as_array()
            .cloned()
            .ok_or_else(|| OvsdbError::Protocol(format!("transact result {}", reply.result)))?;
        if let Some(err) = results.iter().find(|r| !r["error"].is_null()) {
            return Err(OvsdbError::Server(err.to_string()));
        }
        Ok((results, reply))
    }

    /// `monitor` on `db` (RFC 7047 §4.1.5) of every column of `tables`, with id `id`: the
    /// initial `<table-updates>` (the tables' rows now); changes follow as [`Update`]s.
    pub async fn monitor(
        &mut self,
        db: &str,
        id: &Value,
        tables: &[&str],
    ) -> Result<Reply, OvsdbError> {
        let requests: serde_json::Map<String, Value> =
            tables.iter().map(|t| (t.to_string(), json!({}))).collect();
        self.request("monitor", json!([db, id, requests])).await
    }

    /// The next `update` notification; `None` once the connection is closed (and every
    /// notification before was taken). Cancel-safe.
    pub async fn next_update(&mut self) -> Option<Update> {
        self.updates.recv().await
    }

    /// A notification already received, without waiting: `Ok(None)` when there is none,
    /// an error when the connection is closed.
    pub fn try_update(&mut self) -> Result<Option<Update>, OvsdbError> {
        match self.updates.try_recv() {
            Ok(u) => Ok(Some(u)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(closed()),
        }
    }
}

fn closed() -> OvsdbError {
    OvsdbError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the connection is closed",
    ))
}

async fn tcp(addr: &str) -> Result<tokio::net::TcpStream, OvsdbError> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| OvsdbError::Timeout(CONNECT_TIMEOUT))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The connection task: writes requests, reads messages, answers `echo`, routes replies
/// and notifications. On a read or write failure every waiting call gets the error.
async fn serve(
    mut io: Box<dyn Io>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    updates: mpsc::UnboundedSender<Update>,
) {
    let mut pending: HashMap<u64, (u64, oneshot::Sender<Result<Reply, OvsdbError>>)> =
        HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut received: u64 = 0;
    let mut chunk = vec![0u8; 16384];
    let failure: OvsdbError = 'conn: loop {
        // Every complete message in the buffer.
        loop {
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let msg = match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    buf.drain(..used);
                    v
                }
                Some(Err(e)) if !e.is_eof() => break 'conn OvsdbError::Protocol(e.to_string()),
                _ => break,
            };
            received += 1;
            match msg["method"].as_str() {
                Some("echo") => {
                    let answer = json!({"result": msg["params"], "error": null, "id": msg["id"]});
                    if let Err(e) = io.write_all(answer.to_string().as_bytes()).await {
                        break 'conn e.into();
                    }
                }
                Some("update") => {
                    let update = Update {
                        seq: received,
                        monitor: msg["params"][0].clone(),
                        tables: msg["params"][1].clone(),
                    };
                    // The receiver gone: the connection is being dropped.
                    let _ = updates.send(update);
                }
                // Other notifications (`locked`, `stolen`, ...) and requests: not used.
                Some(_) => {}
                None => {
                    let Some((sent_after, waiter)) =
                        msg["id"].as_u64().and_then(|id| pending.remove(&id))
                    else {
                        // A stale reply (its call timed out).
                        continue;
                    };
                    let answer = if msg["error"].is_null() {
                        Ok(Reply {
                            result: msg["result"].clone(),
                            sent_after,
                            seq: received,
                        })
                    } else {
                        Err(OvsdbError::Server(msg["error"].to_string()))
                    };
                    let _ = waiter.send(answer);
                }
            }
        }
        tokio::select! {
            read = io.read(&mut chunk) => match read {
                Ok(0) => break OvsdbError::Io(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => break e.into(),
            },
            req = requests.recv() => {
                let Some(req) = req else {
                    // The `Ovsdb` was dropped.
                    return;
                };
                if let Err(e) = io.write_all(req.text.as_bytes()).await {
                    let _ = req.reply.send(Err(OvsdbError::Io(std::io::Error::new(
                        e.kind(),
                        e.to_string(),
                    ))));
                    break e.into();
                }
                pending.insert(req.id, (received, req.reply));
            }
        }
    };
    tracing::debug!(error = %failure, "OVSDB connection closed");
    for (_, (_, waiter)) in pending {
        let copy = match &failure {
            OvsdbError::Io(e) => OvsdbError::Io(std::io::Error::new(e.kind(), e.to_string())),
            OvsdbError::Protocol(m) => OvsdbError::Protocol(m.clone()),
            other => OvsdbError::Protocol(other.to_string()),
        };
        let _ = waiter.send(Err(copy));
    }
}

/// The rows of some tables of one database as a `monitor` sees them: table name → row uuid
/// → row (every column, `_uuid` as `["uuid", ...]`, no `_version`). Pure: fed by the monitor's initial
/// reply, its [`Update`]s, or a `select` of the same tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    tables: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Replica {
    /// An empty replica of `tables`.
    pub fn new(tables: &[&str]) -> Replica {
        Replica {
            tables: tables
                .iter()
                .map(|t| (t.to_string(), BTreeMap::new()))
                .collect(),
        }
    }

    /// Applies `<table-updates>` (the monitor's initial reply or an `update`): a row with
    /// `new` is replaced by it (without `_version`), a row without is deleted. Tables not replicated are ignored.
    /// The uuids of the rows it names, by table.
    pub fn apply(&mut self, updates: &Value) -> Vec<String> {
        let mut touched = Vec::new();
        let Some(tables) = updates.as_object() else {
            return touched;
        };
        for (table, rows) in tables {
            let (Some(replica), Some(rows)) = (self.tables.get_mut(table), rows.as_object()) else {
                continue;
            };
            for (uuid, change) in rows {
                touched.push(uuid.clone());
                match change.get("new").and_then(Value::as_object) {
                    Some(new) => {
                        let mut row = new.clone();
                        // ovsdb-server sends `_version` with every column: it is not kept.
                        row.remove("_version");
                        row.insert("_uuid".into(), json!(["uuid", uuid]));
                        replica.insert(uuid.clone(), Value::Object(row));
                    }
                    None => {
                        replica.remove(uuid);
                    }
                }
            }
        }
        touched
    }

    /// A replica from the results of a `select` of every row of `tables`, in that order.
    pub fn from_select(tables: &[&str], results: &[Value]) -> Replica {
        let mut out = Replica::new(tables);
        for (table, result) in tables.iter().zip(results) {
            let rows = result["rows"].as_array().into_iter().flatten();
            let replica = out.tables.entry(table.to_string()).or_default();
            for row in rows {
                let (Some(uuid), Some(obj)) = (row["_uuid"][1].as_str(), row.as_object()) else {
                    continue;
                };
                let mut obj = obj.clone();
                obj.remove("_version");
                replica.insert(uuid.to_string(), Value::Object(obj));
            }
        }
        out
    }

    /// The rows of `tables` in the form of a `select`'s results: `[{"rows": [...]}, ...]`.
    pub fn as_select(&self, tables: &[&str]) -> Vec<Value> {
        tables
            .iter()
            .map(|t| {
                let rows: Vec<Value> = self
                    .tables
                    .get(*t)
                    .into_iter()
                    .flat_map(|rows| rows.values().cloned())
                    .collect();
                json!({ "rows": rows })
            })
            .collect()
    }

    /// Whether table `table` has a row `uuid`.
    pub fn has(&self, table: &str, uuid: &str) -> bool {
        self.tables.get(table).is_some_and(|t| t.contains_key(uuid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_json(s: &mut tokio::net::UnixStream, buf: &mut Vec<u8>) -> Value {
        loop {
            let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
            if let Some(Ok(v)) = it.next() {
                let used = it.byte_offset();
                buf.drain(..used);
                return v;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A scripted server on a unix socket: reads one request, sends an `echo` and checks the
    /// answer, sends `notifications`, then sends `replies` (with the request's id) split
    /// across writes, and last another `echo`, answered while no call waits.
    async fn scripted(
        notifications: Vec<Value>,
        replies: Vec<Value>,
    ) -> (String, tokio::task::JoinHandle<Value>) {
        let dir = std::env::temp_dir().join(format!(
            "neutrino-ovsdb-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let req = next_json(&mut s, &mut buf).await;
            let echo = json!({"method": "echo", "params": ["ping"], "id": "e1"});
            s.write_all(echo.to_string().as_bytes()).await.unwrap();
            let answer = next_json(&mut s, &mut buf).await;
            assert_eq!(answer["id"], "e1");
            assert_eq!(answer["result"], json!(["ping"]));
            for n in notifications {
                s.write_all(n.to_string().as_bytes()).await.unwrap();
            }
            for mut r in replies {
                r["id"] = req["id"].clone();
                let text = r.to_string();
                let (a, b) = text.split_at(text.len() / 2);
                s.write_all(a.as_bytes()).await.unwrap();
                s.write_all(b.as_bytes()).await.unwrap();
            }
            // An `echo` while the client waits for nothing: answered all the same.
            let echo = json!({"method": "echo", "params": ["idle"], "id": "e2"});
            s.write_all(echo.to_string().as_bytes()).await.unwrap();
            let answer = next_json(&mut s, &mut buf).await;
            assert_eq!(answer["id"], "e2");
            assert_eq!(answer["result"], json!(["idle"]));
            let _ = std::fs::remove_dir_all(&dir);
            req
        });
        (format!("unix:{}", path.display()), task)
    }

    #[tokio::test]
    async fn echo_is_answered_while_waiting_and_results_returned() {
        let (remote, server) = scripted(
            vec![],
            vec![json!({"result": [{"rows": []}], "error": null})],
        )
        .await;
        let mut db = Ovsdb::connect(&remote).await.unwrap();
        let ops = [json!({"op": "select", "table": "Logical_Switch", "where": []})];
        let results = db.transact("hardware_vtep", &ops).await.unwrap();
        assert_eq!(results, vec![json!({"rows": []})]);
        let req = server.await.unwrap();
        assert_eq!(req["method"], "transact");
        assert_eq!(req["params"][0], "hardware_vtep");
        assert_eq!(req["params"][1]["table"], "Logical_Switch");
        // The server hung up: the next call fails, and so does taking notifications.
        assert!(db.transact("hardware_vtep", &ops).await.is_err());
        assert!(db.next_update().await.is_none());
        assert!(db.try_update().is_err());
    }

    #[tokio::test]
    async fn a_failed_operation_is_an_error() {
        let (remote, server) = scripted(
            vec![],
            vec![json!({"result": [{},
            {"error": "referential integrity violation", "details": "x"}], "error": null})],
        )
        .await;
        let mut db = Ovsdb::connect(&remote).await.unwrap();
        let err = db
            .transact("hardware_vtep", &[json!({})])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OvsdbError::Server(m) if m.contains("referential")),
            "{err}"
        );
        server.await.unwrap();
        assert!(matches!(
            Ovsdb::connect("ssl:127.0.0.1:6640").await,
            Err(OvsdbError::Tls(_))
        ));
        assert!(matches!(
            Ovsdb::connect("http:x").await,
            Err(OvsdbError::Remote(_))
        ));
    }

    #[tokio::test]
    async fn notifications_are_numbered_and_queued_while_a_call_waits() {
        let update = |mac: &str| {
            json!({"method": "update", "id": null, "params": ["m", {"Ucast_Macs_Local": {
                "u1": {"new": {"MAC": mac}}}}]})
        };
        let (remote, server) = scripted(
            vec![update("00:00:00:00:00:01"), update("00:00:00:00:00:02")],
            vec![json!({"result": {}, "error": null})],
        )
        .await;
        let mut db = Ovsdb::connect(&remote).await.unwrap();
        let reply = db
            .monitor("hardware_vtep", &json!("m"), &["Ucast_Macs_Local"])
            .await
            .unwrap();
        let req = server.await.unwrap();
        assert_eq!(req["method"], "monitor");
        assert_eq!(req["params"][1], "m");
        assert_eq!(req["params"][2], json!({"Ucast_Macs_Local": {}}));
        // echo, two updates, the reply.
        assert_eq!((reply.sent_after, reply.seq), (0, 4));
        let first = db.try_update().unwrap().unwrap();
        assert_eq!((first.seq, &first.monitor), (2, &json!("m")));
        let second = db.next_update().await.unwrap();
        assert_eq!(second.seq, 3);
        let mut replica = Replica::new(&["Ucast_Macs_Local"]);
        assert_eq!(replica.apply(&first.tables), vec!["u1".to_string()]);
        replica.apply(&second.tables);
        assert_eq!(
            replica.as_select(&["Ucast_Macs_Local"]),
            vec![json!({"rows": [{"MAC": "00:00:00:00:00:02", "_uuid": ["uuid", "u1"]}]})]
        );
    }

    #[test]
    fn the_replica_follows_inserts_modifications_and_deletes() {
        let tables = ["A", "B"];
        let mut r = Replica::new(&tables);
        r.apply(&json!({
            "A": {"a1": {"new": {"x": 1}}, "a2": {"new": {"x": 2}}},
            "B": {"b1": {"new": {"y": "z"}}},
            "Other": {"o1": {"new": {}}},
        }));
        // A modification: `old` holds the changed columns, `new` the whole row.
        r.apply(
            &json!({"A": {"a1": {"old": {"x": 1}, "new": {"x": 10, "_version": ["uuid", "v2"]}}}}),
        );
        r.apply(&json!({"A": {"a2": {"old": {"x": 2}}}}));
        assert!(r.has("A", "a1") && !r.has("A", "a2") && r.has("B", "b1"));
        assert!(!r.has("Other", "o1"));
        let select = r.as_select(&tables);
        assert_eq!(
            select,
            vec![
                json!({"rows": [{"x": 10, "_uuid": ["uuid", "a1"]}]}),
                json!({"rows": [{"y": "z", "_uuid": ["uuid", "b1"]}]}),
            ]
        );
        // A `select` of the same rows (with `_version`) is the same replica.
        let mut with_version = select.clone();
        with_version[0]["rows"][0]["_version"] = json!(["uuid", "v"]);
        assert_eq!(Replica::from_select(&tables, &with_version), r);
    }
}
