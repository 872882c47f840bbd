//! The SQLite writer: one connection owned by the process, statements run on the calling
//! thread, and concurrent write transactions grouped into one SQLite commit.
//!
//! SQLite has one writer at a time, so write transactions queue for this connection (a fair,
//! FIFO async lock). Its statements execute inline: a few microseconds each from the page
//! cache, instead of a hand-off to a driver thread and back per statement.
//!
//! Group commit: the holder of the connection runs inside `SAVEPOINT member` of a batch
//! transaction (`BEGIN IMMEDIATE` by the first member). A failing member rolls back to its
//! savepoint and leaves no trace; a succeeding one releases the savepoint into the batch.
//! When nobody else is queued (or the batch is full) the finishing member commits the batch;
//! otherwise it hands the connection on and waits, and whoever commits next reports the
//! outcome to every waiting member. So a member's commit returns only once its writes are
//! committed: a crash before that loses only unacknowledged work. A background committer
//! queued behind the members commits a batch left open when a queued member went away.
//!
//! Checkpoints (copying the write-ahead log back into the database file, with an fsync) run
//! on a background thread with its own connection, a few times a second when there were
//! commits, instead of inside whichever commit crosses SQLite's automatic threshold. SQLite
//! restarts the log only when a write begins with every frame checkpointed, which under
//! continuous writes never happens by chance: so once the log is long, the checkpointer takes
//! a turn at the writer (in the queue like a member) to checkpoint the few frames added
//! since its lock-free pass, and the next write starts the log over.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Mutex, Notify, OwnedMutexGuard};

use crate::{Observer, StoreError};

/// Most members in one batch.
const MAX_BATCH: usize = 64;
/// How often the checkpointer looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Log length (frames of one page) from which the checkpointer makes the log start over.
const RESTART_FRAMES: i64 = 4096;

/// The writer connection and its open batch.
pub(crate) struct Writer {
    batch: Arc<Mutex<Batch>>,
    /// Tasks queued for the connection (not counting the committer).
    queued: AtomicUsize,
    /// Wakes the committer when a batch is left open.
    committer: Arc<Notify>,
    /// Batches committed so far (the checkpointer watches it).
    commits: Arc<AtomicU64>,
}

struct Batch {
    conn: rusqlite::Connection,
    /// A batch transaction is open.
    open: bool,
    /// Members whose savepoint is released into the open batch, waiting for its commit.
    pending: Vec<oneshot::Sender<Result<(), String>>>,
    commits: Arc<AtomicU64>,
    observer: Observer,
}

impl Batch {
    /// Ends the open batch with COMMIT and tells every waiting member how it went.
    fn commit(&mut self) {
        if !self.open {
            return;
        }
        let started = std::time::Instant::now();
        match run(&self.conn, "COMMIT") {
            Ok(()) => {
                self.open = false;
                self.commits.fetch_add(1, Ordering::Release);
                if let Some(observer) = self.observer.get() {
                    observer.committed(self.pending.len(), started.elapsed());
                }
                for member in self.pending.drain(..) {
                    let _ = member.send(Ok(()));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "SQLite batch commit failed");
                self.abort(&format!("commit failed: {err}"));
            }
        }
    }

    /// Rolls the whole batch back (a failure left its state unknown) and fails its members.
    fn abort(&mut self, why: &str) {
        if !self.conn.is_autocommit() {
            let _ = run(&self.conn, "ROLLBACK");
        }
        self.open = false;
        for member in self.pending.drain(..) {
            let _ = member.send(Err(why.to_string()));
        }
    }
}

/// Counts a task as queued for the connection while it exists.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Writer {
    /// Opens the writer connection on the SQLite file at `path` and starts the committer.
    pub(crate) fn open(
        path: &str,
        pragmas: &[&str],
        observer: Observer,
    ) -> Result<Arc<Writer>, StoreError> {
        let conn = connect(path, pragmas)?;
        // Savepoint journals in memory, not in temporary files; checkpoints in the
        // background (below); a log file that grew under a burst shrinks back when it
        // restarts.
        conn.execute_batch(
            "PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=0; \
             PRAGMA journal_size_limit=33554432",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        let checkpoints = connect(path, pragmas)?;
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Arc::new(Writer {
            batch: Arc::new(Mutex::new(Batch {
                conn,
                open: false,
                pending: Vec::new(),
                commits: commits.clone(),
                observer,
            })),
            queued: AtomicUsize::new(0),
            committer: Arc::new(Notify::new()),
            commits,
        });
        tokio::spawn(committer(Arc::downgrade(&writer), writer.committer.clone()));
        let (watched, batch) = (
            Arc::downgrade(&writer.commits),
            Arc::downgrade(&writer.batch),
        );
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, watched, batch))
            .map_err(|e| StoreError::Batch(format!("cannot start the checkpointer: {e}")))?;
        Ok(writer)
    }

    /// Waits for the connection and opens a member transaction on it.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<Member, StoreError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let queued = Queued(&self.queued);
        let guard = self.batch.clone().lock_owned().await;
        drop(queued);
        let mut member = Member {
            guard: Some(guard),
            writer: self.clone(),
            savepoint: false,
        };
        let batch = member.batch();
        if !batch.open {
            run(&batch.conn, "BEGIN IMMEDIATE")?;
            batch.open = true;
        }
        run(&batch.conn, "SAVEPOINT member")?;
        member.savepoint = true;
        Ok(member)
    }

    /// Tasks waiting for the connection.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Batches committed so far.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// After a member left: commit now when nobody is queued (or the batch is full), else
    /// leave that to whoever holds the connection next, or to the committer should they go
    /// away.
    fn hand_on(&self, mut batch: OwnedMutexGuard<Batch>) {
        if self.queued.load(Ordering::Acquire) == 0 || batch.pending.len() >= MAX_BATCH {
            batch.commit();
        } else {
            drop(batch);
            self.committer.notify_one();
        }
    }
}

/// Runs a transaction control statement (prepared once per connection).
fn run(conn: &rusqlite::Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([]).map(drop)
}

/// A connection to the SQLite file with the store's settings.
fn connect(path: &str, pragmas: &[&str]) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    for pragma in pragmas {
        // Some pragmas answer with a row, some do not.
        conn.query_row(pragma, [], |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })?;
    }
    Ok(conn)
}

/// Checkpoints the write-ahead log after new commits, without blocking writers or readers
/// (PASSIVE); once the log is long, finishes under the writer so that the log restarts. Ends
/// when the writer is gone.
fn checkpointer(conn: rusqlite::Connection, commits: Weak<AtomicU64>, batch: Weak<Mutex<Batch>>) {
    // (busy, frames in the log, frames checkpointed)
    let checkpoint = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
    };
    let mut seen = 0;
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(commits) = commits.upgrade() else {
            return;
        };
        let now = commits.load(Ordering::Acquire);
        if now == seen {
            continue;
        }
        seen = now;
        let result = checkpoint().and_then(|(_, frames, _)| {
            if frames < RESTART_FRAMES {
                return Ok(());
            }
            let Some(batch) = batch.upgrade() else {
                return Ok(());
            };
            let mut batch = batch.blocking_lock();
            // An open batch only waits for the committer: commit it first.
            batch.commit();
            checkpoint().map(drop)
        });
        if let Err(err) = result {
            tracing::warn!(error = %err, "SQLite checkpoint failed");
        }
    }
}

/// Commits batches left open; ends when the writer is gone.
async fn committer(writer: Weak<Writer>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        // Queued behind the members that were waiting: their work joins this batch.
        writer.batch.lock().await.commit();
    }
}

/// One write transaction on the writer connection: a savepoint inside the open batch.
/// Dropping it without [`Member::commit`] rolls back to the savepoint.
pub(crate) struct Member {
    guard: Option<OwnedMutexGuard<Batch>>,
    writer: Arc<Writer>,
    savepoint: bool,
}

impl Member {
    fn batch(&mut self) -> &mut Batch {
        self.guard.as_mut().expect("member holds the writer")
    }

    /// The writer connection, for this member's statements; an error once SQLite has rolled
    /// the whole transaction back by itself (an I/O error, a full disk), so that nothing
    /// runs outside it.
    pub(crate) fn conn(&mut self) -> Result<&rusqlite::Connection, StoreError> {
        let conn = &self.batch().conn;
        if conn.is_autocommit() {
            return Err(StoreError::Batch("the transaction was rolled back".into()));
        }
        Ok(conn)
    }

    /// Releases the savepoint into the batch; returns once the batch is committed.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let mut batch = self.guard.take().expect("member holds the writer");
        if let Err(err) = run(&batch.conn, "RELEASE member") {
            batch.abort(&format!("savepoint release failed: {err}"));
            return Err(err.into());
        }
        let (done, outcome) = oneshot::channel();
        batch.pending.push(done);
        self.writer.hand_on(batch);
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(StoreError::Batch(why)),
            Err(_) => Err(StoreError::Batch("the writer went away".into())),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let Some(mut batch) = self.guard.take() else {
            return;
        };
        if !self.savepoint {
            // BEGIN or SAVEPOINT failed.
            batch.abort("could not start a member transaction");
            return;
        }
        let rolled_back = run(&batch.conn, "ROLLBACK TO member")
            .and_then(|()| run(&batch.conn, "RELEASE member"));
        if let Err(err) = rolled_back {
            tracing::error!(error = %err, "SQLite rollback to savepoint failed");
            batch.abort(&format!("rollback to savepoint failed: {err}"));
            return;
        }
        self.writer.hand_on(batch);
    }
}
