//! `neutrino host-credential create|list|delete`: an admin manages the host agents'
//! credentials through the API (`/v2.0/neutrino/host-credentials`), with the admin's openrc.
//! `create` writes the agent's openrc (`OS_AUTH_TYPE=v3applicationcredential`), the only
//! copy of the secret, for `neutrino agent --openrc` (alias `--credential-file`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use neutrino_keystone::{network_endpoint, password_login, Credentials, AUTH_TOKEN_HEADER};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct HostCredentialArgs {
    /// The admin's openrc file (default: the `OS_*` variables of the environment).
    #[arg(long, global = true, env = "NEUTRINO_OPENRC")]
    openrc: Option<PathBuf>,
    /// Server URL (default: the network endpoint of the identity catalog).
    #[arg(long, global = true, env = "NEUTRINO_SERVER")]
    server: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create the credential of the agent of a host and write its openrc (mode 0600).
    Create {
        /// The host (the agent's `--host`).
        #[arg(long)]
        host: String,
        /// A description.
        #[arg(long)]
        description: Option<String>,
        /// Write the agent's openrc here (refuses to overwrite a file); default: stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List the host credentials (id, host, created at; never a secret).
    List,
    /// Delete a host credential: its tokens stop working at once.
    Delete {
        /// The credential's id.
        id: String,
    },
}

/// Reads `OS_*` credentials from an openrc file, or from the environment without one.
pub fn read_credentials(openrc: Option<&Path>) -> anyhow::Result<Credentials> {
    let from_file = match openrc {
        Some(path) => neutrino_keystone::parse_openrc(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading --openrc {}", path.display()))?,
        ),
        None => Vec::new(),
    };
    Ok(Credentials::from_env(
        &|k| match from_file.iter().rev().find(|(name, _)| name == k) {
            Some((_, value)) => Some(value.clone()),
            None if openrc.is_some() => None,
            None => std::env::var(k).ok(),
        },
    )?)
}

/// The agent's openrc for a new credential.
fn agent_openrc(auth_url: &str, cred: &Value, cacert: Option<&str>) -> String {
    let s = |k: &str| cred[k].as_str().unwrap_or_default().to_string();
    let mut text = format!(
        "# Host credential {id} of the agent of host {host}: only that host's agent calls.\n\
         # neutrino agent --host {host} --openrc THIS_FILE ...\n\
         export OS_AUTH_URL={auth_url}\nexport OS_AUTH_TYPE=v3applicationcredential\n\
         export OS_APPLICATION_CREDENTIAL_ID={id}\n\
         export OS_APPLICATION_CREDENTIAL_SECRET='{secret}'\n\
         export OS_IDENTITY_API_VERSION=3\nexport OS_INTERFACE=public\n",
        id = s("id"),
        host = s("host"),
        secret = s("secret"),
    );
    if let Some(ca) = cacert {
        text.push_str(&format!("export OS_CACERT='{ca}'\n"));
    }
    text
}

pub async fn run(args: HostCredentialArgs) -> anyhow::Result<()> {
    let creds = read_credentials(args.openrc.as_deref())?;
    if creds.application_credential.is_some() {
        bail!("a host credential cannot manage host credentials: use the admin's openrc");
    }
    let http = creds.tls(reqwest::Client::builder())?.build()?;
    let (token, doc) = password_login(&http, &creds).await?;
    let server = match args.server {
        Some(s) => s,
        None => network_endpoint(&doc, creds.region.as_deref())?,
    };
    let base = format!(
        "{}/v2.0/neutrino/host-credentials",
        server.trim_end_matches('/')
    );
    let send = |req: reqwest::RequestBuilder| {
        let token = token.clone();
        async move {
            let res = req.header(AUTH_TOKEN_HEADER, token).send().await?;
            let status = res.status();
            let text = res.text().await?;
            if !status.is_success() {
                bail!("HTTP {status}: {}", text.trim());
            }
            Ok::<Value, anyhow::Error>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    match args.action {
        Action::Create {
            host,
            description,
            output,
        } => {
            // Refuse an existing output file before creating anything.
            let file = match &output {
                Some(path) => Some(open_new(path)?),
                None => None,
            };
            let body = json!({"host_credential": {"host": host, "description": description}});
            let doc = send(http.post(&base).json(&body)).await?;
            let text = agent_openrc(
                &creds.auth_url,
                &doc["host_credential"],
                creds.cacert.as_deref(),
            );
            match (file, output) {
                (Some(mut file), Some(path)) => {
                    use std::io::Write;
                    file.write_all(text.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "host credential {} for host {host} written to {}",
                        doc["host_credential"]["id"].as_str().unwrap_or_default(),
                        path.display()
                    );
                }
                _ => print!("{text}"),
            }
        }
        Action::List => {
            let doc = send(http.get(&base)).await?;
            for c in doc["host_credentials"].as_array().into_iter().flatten() {
                let s = |k: &str| c[k].as_str().unwrap_or_default();
                println!(
                    "{}  {}  {}  {}",
                    s("id"),
                    s("host"),
                    s("created_at"),
                    s("description")
                );
            }
        }
        Action::Delete { id } => {
            send(http.delete(format!("{base}/{id}"))).await?;
            eprintln!("host credential {id} deleted; its tokens are revoked");
        }
    }
    Ok(())
}

fn open_new(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The written openrc is what the agent reads back as an application credential.
    #[test]
    fn the_agent_openrc_reads_back_as_an_application_credential() {
        let cred = json!({"id": "c1", "host": "h1", "secret": "abc"});
        let text = agent_openrc("https://ctl:9696/v3", &cred, Some("/etc/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h1-openrc");
        std::fs::write(&path, text).unwrap();
        let creds = read_credentials(Some(&path)).unwrap();
        let ac = creds.application_credential.unwrap();
        assert_eq!((ac.id.as_str(), ac.secret.as_str()), ("c1", "abc"));
        assert_eq!(creds.auth_url, "https://ctl:9696/v3");
        assert_eq!(creds.cacert.as_deref(), Some("/etc/ca.pem"));
        assert!(
            open_new(&path).is_err(),
            "an existing file is not overwritten"
        );
    }
}
