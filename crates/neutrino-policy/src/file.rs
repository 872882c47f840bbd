//! Reading an operator's `policy.yaml` (or `policy.json`: JSON is YAML) into `(name, check
//! string, line)` entries, keeping each key's line for error messages.

use crate::error::PolicyError;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One `"name": "check"` line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRule {
    pub name: String,
    pub check: String,
    pub line: usize,
}

/// The file's rules in file order. An empty file, or one of only comments, has none.
pub(crate) fn read_rules(text: &str, origin: &str) -> Result<Vec<FileRule>, PolicyError> {
    let mut events = EventList::default();
    Parser::new_from_str(text)
        .load(&mut events, false)
        .map_err(|error| PolicyError::File {
            origin: origin.to_owned(),
            line: error.marker().line(),
            reason: format!("not valid YAML or JSON: {}", error.info()),
        })?;
    let fail = |line: usize, reason: String| PolicyError::File {
        origin: origin.to_owned(),
        line,
        reason,
    };
    let mut events = events
        .0
        .into_iter()
        .filter(|(event, _)| {
            !matches!(
                event,
                Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd
            )
        })
        .peekable();
    match events.next() {
        None => return Ok(Vec::new()),
        Some((Event::Scalar(value, TScalarStyle::Plain, ..), _)) if is_null(&value) => {
            return Ok(Vec::new())
        }
        Some((Event::MappingStart(..), _)) => {}
        Some((_, mark)) => {
            return Err(fail(
                mark.line(),
                "the file must be a mapping of rule names to check strings".into(),
            ))
        }
    }
    let mut rules = Vec::new();
    loop {
        let (name, line) = match events.next() {
            Some((Event::MappingEnd, _)) | None => break,
            Some((Event::Scalar(name, ..), mark)) => (name, mark.line()),
            Some((_, mark)) => {
                return Err(fail(
                    mark.line(),
                    "a rule name must be a plain string".into(),
                ))
            }
        };
        let check = match events.next() {
            Some((Event::Scalar(value, TScalarStyle::Plain, ..), _)) if is_null(&value) => {
                return Err(fail(
                    line,
                    format!("rule {name:?} has no value; write \"\" or \"@\" to allow everyone"),
                ))
            }
            Some((Event::Scalar(value, ..), _)) => value,
            Some((Event::SequenceStart(..), _)) => {
                return Err(fail(
                    line,
                    format!(
                        "rule {name:?}: the old list syntax is not supported; write a check string"
                    ),
                ))
            }
            _ => return Err(fail(line, format!("rule {name:?} must be a check string"))),
        };
        rules.push(FileRule { name, check, line });
    }
    Ok(rules)
}

/// YAML's plain-scalar spellings of null.
fn is_null(value: &str) -> bool {
    matches!(value, "" | "~" | "null" | "Null" | "NULL")
}

#[derive(Default)]
struct EventList(Vec<(Event, Marker)>);

impl MarkedEventReceiver for EventList {
    fn on_event(&mut self, event: Event, mark: Marker) {
        self.0.push((event, mark));
    }
}
