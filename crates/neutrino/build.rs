//! Names the commit the binary is built from, for `neutrino --version`: `NEUTRINO_COMMIT`
//! when the builder sets it (a packager building from a tarball), else the git checkout's
//! `HEAD` (with `-dirty` for uncommitted changes), else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=NEUTRINO_COMMIT");
    let commit = std::env::var("NEUTRINO_COMMIT").ok().or_else(|| {
        // Rebuild when HEAD moves (a commit, a checkout) or the index changes.
        for path in ["HEAD", "index"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
            println!("cargo:rerun-if-changed={common}/refs/heads");
            println!("cargo:rerun-if-changed={common}/packed-refs");
        }
        let head = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{head}-dirty") } else { head })
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NEUTRINO_COMMIT={commit}");
}
