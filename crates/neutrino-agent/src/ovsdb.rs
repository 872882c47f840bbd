//! A minimal OVSDB (RFC 7047) JSON-RPC client over TCP or a unix socket: `transact`, and
//! the server's `echo` keep-alives answered while a reply is awaited. Uses only tokio's
//! readiness API (no buffered I/O layer).

use serde_json::{json, Value};

/// OVSDB client failures.
#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    /// The remote is neither `tcp:HOST:PORT` nor `unix:PATH`.
    #[error("bad OVSDB remote {0:?}: expected tcp:HOST:PORT or unix:PATH")]
    Remote(String),
    /// Connecting, reading or writing failed, or the server closed the connection.
    #[error("OVSDB connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not JSON-RPC.
    #[error("OVSDB protocol: {0}")]
    Protocol(String),
    /// The server answered the request with an error, or an operation failed.
    #[error("OVSDB error: {0}")]
    Server(String),
    /// No answer in time.
    #[error("OVSDB server did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let n = match self {
                Stream::Tcp(s) => {
                    s.writable().await?;
                    s.try_write(buf)
                }
                Stream::Unix(s) => {
                    s.writable().await?;
                    s.try_write(buf)
                }
            };
            match n {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = match self {
                Stream::Tcp(s) => {
                    s.readable().await?;
                    s.try_read(buf)
                }
                Stream::Unix(s) => {
                    s.readable().await?;
                    s.try_read(buf)
                }
            };
            match n {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }
}

/// One connection to an OVSDB server.
pub struct Ovsdb {
    stream: Stream,
    buf: Vec<u8>,
    next_id: u64,
    timeout: std::time::Duration,
}

impl Ovsdb {
    /// Connects to `tcp:HOST:PORT` or `unix:PATH`.
    pub async fn connect(remote: &str) -> Result<Ovsdb, OvsdbError> {
        // Short: the agent's loop waits for its switches.
        let timeout = std::time::Duration::from_secs(3);
        let stream = if let Some(addr) = remote.strip_prefix("tcp:") {
            let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| OvsdbError::Timeout(timeout))??;
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        } else if let Some(path) = remote.strip_prefix("unix:") {
            Stream::Unix(tokio::net::UnixStream::connect(path).await?)
        } else {
            return Err(OvsdbError::Remote(remote.to_string()));
        };
        Ok(Ovsdb {
            stream,
            buf: Vec::new(),
            next_id: 0,
            timeout: std::time::Duration::from_secs(10),
        })
    }

    /// Sends one request and returns its `result`, answering `echo`s meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, OvsdbError> {
        self.next_id += 1;
        let id = self.next_id;
        let req = json!({"method": method, "params": params, "id": id});
        self.stream.write_all(req.to_string().as_bytes()).await?;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.reply(id))
            .await
            .map_err(|_| OvsdbError::Timeout(timeout))?
    }

    async fn reply(&mut self, id: u64) -> Result<Value, OvsdbError> {
        loop {
            let msg = self.next_message().await?;
            if msg["method"] == "echo" {
                let answer = json!({"result": msg["params"], "error": null, "id": msg["id"]});
                self.stream.write_all(answer.to_string().as_bytes()).await?;
                continue;
            }
            if msg["id"] != json!(id) {
                // Notifications (`update`, `locked`, ...) and stale replies.
                continue;
            }
            if !msg["error"].is_null() {
                return Err(OvsdbError::Server(msg["error"].to_string()));
            }
            return Ok(msg["result"].clone());
        }
    }

    /// The next complete JSON message on the connection.
    async fn next_message(&mut self) -> Result<Value, OvsdbError> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.drain(..used);
                    return Ok(v);
                }
                Some(Err(e)) if !e.is_eof() => return Err(OvsdbError::Protocol(e.to_string())),
                _ => {}
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(OvsdbError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// `transact` on `db`: the results of `ops`, or the first failed operation's error.
    pub async fn transact(&mut self, db: &str, ops: &[Value]) -> Result<Vec<Value>, OvsdbError> {
        let mut params = vec![json!(db)];
        params.extend(ops.iter().cloned());
        let result = self.call("transact", Value::Array(params)).await?;
        let results = result
            .as_array()
            .cloned()
            .ok_or_else(|| OvsdbError::Protocol(format!("transact result {result}")))?;
        if let Some(err) = results.iter().find(|r| !r["error"].is_null()) {
            return Err(OvsdbError::Server(err.to_string()));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_json(s: &Stream, buf: &mut Vec<u8>) -> Value {
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
    /// answer, then sends `replies` (with the request's id) split across writes.
    async fn scripted(replies: Vec<Value>) -> (String, tokio::task::JoinHandle<Value>) {
        let dir = std::env::temp_dir().join(format!(
            "neutrino-ovsdb-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let s = Stream::Unix(s);
            let mut buf = Vec::new();
            let req = next_json(&s, &mut buf).await;
            let echo = json!({"method": "echo", "params": ["ping"], "id": "e1"});
            s.write_all(echo.to_string().as_bytes()).await.unwrap();
            let answer = next_json(&s, &mut buf).await;
            assert_eq!(answer["id"], "e1");
            assert_eq!(answer["result"], json!(["ping"]));
            for mut r in replies {
                r["id"] = req["id"].clone();
                let text = r.to_string();
                let (a, b) = text.split_at(text.len() / 2);
                s.write_all(a.as_bytes()).await.unwrap();
                s.write_all(b.as_bytes()).await.unwrap();
            }
            let _ = std::fs::remove_dir_all(&dir);
            req
        });
        (format!("unix:{}", path.display()), task)
    }

    #[tokio::test]
    async fn echo_is_answered_while_waiting_and_results_returned() {
        let (remote, server) =
            scripted(vec![json!({"result": [{"rows": []}], "error": null})]).await;
        let mut db = Ovsdb::connect(&remote).await.unwrap();
        let ops = [json!({"op": "select", "table": "Logical_Switch", "where": []})];
        let results = db.transact("hardware_vtep", &ops).await.unwrap();
        assert_eq!(results, vec![json!({"rows": []})]);
        let req = server.await.unwrap();
        assert_eq!(req["method"], "transact");
        assert_eq!(req["params"][0], "hardware_vtep");
        assert_eq!(req["params"][1]["table"], "Logical_Switch");
    }

    #[tokio::test]
    async fn a_failed_operation_is_an_error() {
        let (remote, server) = scripted(vec![json!({"result": [{},
            {"error": "referential integrity violation", "details": "x"}], "error": null})])
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
            Ovsdb::connect("ssl:x").await,
            Err(OvsdbError::Remote(_))
        ));
    }
}
