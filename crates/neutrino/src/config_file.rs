//! The configuration file, `/etc/neutrino/neutrino.toml` (or `--config FILE`,
//! `NEUTRINO_CONFIG`): every option of `neutrino server` and `neutrino agent` has a key of the
//! same name (`data_dir` for `--data-dir`) in the `[server]` or `[agent]` table, the global
//! ones (`log_format`) at the top. A flag on the command line wins over its environment
//! variable, which wins over the file, which wins over the built-in default. A key that names
//! no option is an error naming the key.
//!
//! The file becomes command-line arguments: the command line is read once leniently to learn
//! the subcommand and which options it (or the environment) already sets, then the file's
//! other keys are appended as flags and the whole is parsed for real.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// Where the file is read from when neither `--config` nor `NEUTRINO_CONFIG` names one (a
/// missing default file is no error).
pub const DEFAULT_PATH: &str = "/etc/neutrino/neutrino.toml";

/// The subcommands whose options the file may set.
const TABLES: &[&str] = &["server", "agent"];

/// `argv` with the options of the configuration file added, or unchanged when there is none.
pub fn with_config_file(cmd: &Command, argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let lenient = cmd.clone().ignore_errors(true);
    let Ok(matches) = lenient.try_get_matches_from(argv.clone()) else {
        // `--help`, `--version` and the like: let the real parse answer.
        return Ok(argv);
    };
    let explicit = matches.get_one::<String>("config").map(PathBuf::from);
    let path = match explicit {
        Some(path) => path,
        None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
        None => return Ok(argv),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("in the configuration file {}", path.display()))?;
    let extra = flags_from(cmd, &matches, &table)
        .with_context(|| format!("in the configuration file {}", path.display()))?;
    let mut out = argv;
    out.extend(extra);
    Ok(out)
}

/// The flags the file adds to a command line that parsed into `matches`.
fn flags_from(
    cmd: &Command,
    matches: &ArgMatches,
    table: &toml::Table,
) -> anyhow::Result<Vec<OsString>> {
    let sub = matches.subcommand();
    let mut flags = Vec::new();
    for (key, value) in table {
        if let Some(section) = value.as_table() {
            if !TABLES.contains(&key.as_str()) {
                bail!("unknown table [{key}] (known: [server], [agent])");
            }
            let Some((name, sub_matches)) = sub.filter(|(name, _)| *name == key) else {
                // Another subcommand's table: checked, not used.
                let other = cmd.find_subcommand(key).expect("TABLES are subcommands");
                for (k, v) in section {
                    flag(other, None, &format!("{key}.{k}"), k, v)?;
                }
                continue;
            };
            let sub_cmd = cmd.find_subcommand(name).expect("parsed subcommand exists");
            for (k, v) in section {
                flags.extend(flag(
                    sub_cmd,
                    Some(sub_matches),
                    &format!("{key}.{k}"),
                    k,
                    v,
                )?);
            }
        } else {
            // A global option; applies to whichever subcommand runs.
            let at = sub.map(|(_, m)| m).unwrap_or(matches);
            flags.extend(flag(cmd, Some(at), key, key, value)?);
        }
    }
    Ok(flags)
}

/// The flags for key `key` of `cmd` (none when the command line or the environment already
/// set it, or when `matches` is `None`: only checking).
fn flag(
    cmd: &Command,
    matches: Option<&ArgMatches>,
    shown: &str,
    key: &str,
    value: &toml::Value,
) -> anyhow::Result<Vec<OsString>> {
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == key && a.get_long().is_some() && key != "config")
        .with_context(|| {
            format!(
                "unknown key `{shown}`: no such option of `neutrino {}`",
                cmd.get_name()
            )
        })?;
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                _ => bail!("`{shown}`: a list holds strings or numbers"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        _ => bail!("`{shown}`: expected a string, number, boolean or list"),
    };
    let Some(matches) = matches else {
        return Ok(Vec::new());
    };
    let set_already = matches!(
        matches.value_source(key),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    if set_already {
        return Ok(Vec::new());
    }
    let long = format!("--{}", arg.get_long().expect("checked above"));
    Ok(match arg.get_action() {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => vec![long.into()],
            toml::Value::Boolean(false) => Vec::new(),
            _ => bail!("`{shown}`: expected true or false"),
        },
        _ => vec![format!("{long}={text}").into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("neutrino")
            .arg(Arg::new("config").long("config").global(true))
            .arg(
                Arg::new("log_format")
                    .long("log-format")
                    .global(true)
                    .default_value("text"),
            )
            .subcommand(
                Command::new("server")
                    .arg(
                        Arg::new("listen")
                            .long("listen")
                            .default_value("127.0.0.1:9696"),
                    )
                    .arg(Arg::new("l3_ha").long("l3-ha").action(ArgAction::SetTrue))
                    .arg(Arg::new("physical_networks").long("physical-networks"))
                    .arg(
                        Arg::new("vni_range")
                            .long("vni-range")
                            .env("NEUTRINO_TEST_VNI_RANGE"),
                    ),
            )
            .subcommand(Command::new("agent").arg(Arg::new("host").long("host").required(true)))
    }

    fn flags(argv: &[&str], file: &str) -> anyhow::Result<Vec<String>> {
        let matches = cmd()
            .ignore_errors(true)
            .try_get_matches_from(argv)
            .unwrap();
        let table: toml::Table = file.parse().unwrap();
        Ok(flags_from(&cmd(), &matches, &table)?
            .into_iter()
            .map(|f| f.into_string().unwrap())
            .collect())
    }

    #[test]
    fn the_file_fills_what_the_command_line_leaves_to_defaults() {
        let file = r#"
            log_format = "json"
            [server]
            listen = "0.0.0.0:9696"
            l3_ha = true
            physical_networks = ["physnet1", "physnet2"]
            [agent]
            host = "compute1"
        "#;
        let got = flags(&["neutrino", "server"], file).unwrap();
        assert_eq!(
            got,
            [
                "--log-format=json",
                "--l3-ha",
                "--listen=0.0.0.0:9696",
                "--physical-networks=physnet1,physnet2"
            ]
        );
        // The command line wins.
        let got = flags(&["neutrino", "server", "--listen", "127.0.0.1:1"], file).unwrap();
        assert!(!got.iter().any(|f| f.starts_with("--listen")), "{got:?}");
        // A required option of another subcommand can come from the file.
        assert_eq!(
            flags(&["neutrino", "agent"], file).unwrap(),
            ["--host=compute1", "--log-format=json"]
        );
    }

    #[test]
    fn unknown_keys_and_tables_are_named() {
        let err = flags(&["neutrino", "server"], "[server]\nlisten_on = \"x\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown key `server.listen_on`"),
            "{err}"
        );
        // Checked even when another subcommand runs.
        let err = flags(&["neutrino", "server"], "[agent]\nhots = \"x\"").unwrap_err();
        assert!(err.to_string().contains("`agent.hots`"), "{err}");
        let err = flags(&["neutrino", "server"], "[servre]\nlisten = \"x\"").unwrap_err();
        assert!(err.to_string().contains("[servre]"), "{err}");
        let err = flags(&["neutrino", "server"], "verbose = true").unwrap_err();
        assert!(err.to_string().contains("`verbose`"), "{err}");
        let err = flags(&["neutrino", "server"], "[server]\nl3_ha = \"yes\"").unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }
}
