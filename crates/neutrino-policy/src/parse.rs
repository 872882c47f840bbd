//! The oslo.policy rule language: tokens as `oslo_policy/_parser.py` cuts them (whitespace
//! separates; parentheses count only at a token's ends, so `%(project_id)s` stays whole;
//! `and`/`or`/`not` in any case) and the grammar its reducer implements, with the usual
//! precedence `not` > `and` > `or`. Unlike oslo, which logs a bad rule and denies, a rule that
//! does not parse is an error here, so an operator learns of it at load time.

use crate::check::{Check, Credential, FieldCheck, Template};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    And,
    Or,
    Not,
    /// A quoted string on its own: oslo's parser has no use for one, so it is an error.
    Quoted(&'a str),
    Check(&'a str),
}

/// Parses one check string; `rule_index` turns a `rule:NAME` into the index it will have in the
/// policy (so references are resolved while parsing, with no second pass at enforce time).
pub(crate) fn parse_rule(
    text: &str,
    rule_index: &mut dyn FnMut(&str) -> usize,
) -> Result<Check, String> {
    if text.is_empty() {
        return Ok(Check::Always);
    }
    let tokens = tokenize(text);
    if tokens.is_empty() {
        return Err("a rule of only blanks is not valid; write \"\" or \"@\" to allow all".into());
    }
    let mut parser = Parser {
        tokens: &tokens,
        position: 0,
        rule_index,
    };
    let check = parser.or_expression()?;
    match parser.peek() {
        None => Ok(check),
        Some(Token::Close) => Err("unbalanced ')'".into()),
        Some(token) => Err(format!(
            "unexpected {} after a complete rule",
            describe(token)
        )),
    }
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let word_without_opens = word.trim_start_matches('(');
        tokens.extend(std::iter::repeat_n(
            Token::Open,
            word.len() - word_without_opens.len(),
        ));
        let core = word_without_opens.trim_end_matches(')');
        let closes = word_without_opens.len() - core.len();
        if !core.is_empty() {
            tokens.push(match core.to_ascii_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                _ if is_quoted(core) => Token::Quoted(core),
                _ => Token::Check(core),
            });
        }
        tokens.extend(std::iter::repeat_n(Token::Close, closes));
    }
    tokens
}

fn is_quoted(text: &str) -> bool {
    text.len() >= 2
        && (text.starts_with('"') && text.ends_with('"')
            || text.starts_with('\'') && text.ends_with('\''))
}

fn describe(token: Token<'_>) -> String {
    match token {
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::And => "'and'".into(),
        Token::Or => "'or'".into(),
        Token::Not => "'not'".into(),
        Token::Quoted(text) | Token::Check(text) => format!("{text:?}"),
    }
}

struct Parser<'t, 'r> {
    tokens: &'t [Token<'t>],
    position: usize,
    rule_index: &'r mut dyn FnMut(&str) -> usize,
}

impl<'t> Parser<'t, '_> {
    fn peek(&self) -> Option<Token<'t>> {
        self.tokens.get(self.position).copied()
    }

    fn or_expression(&mut self) -> Result<Check, String> {
        let mut alternatives = vec![self.and_expression()?];
        while self.peek() == Some(Token::Or) {
            self.position += 1;
            alternatives.push(self.and_expression()?);
        }
        Ok(flatten(alternatives, false))
    }

    fn and_expression(&mut self) -> Result<Check, String> {
        let mut conditions = vec![self.unary()?];
        while self.peek() == Some(Token::And) {
            self.position += 1;
            conditions.push(self.unary()?);
        }
        Ok(flatten(conditions, true))
    }

    fn unary(&mut self) -> Result<Check, String> {
        let token = self.peek();
        self.position += 1;
        match token {
            Some(Token::Not) => Ok(Check::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let inner = self.or_expression()?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.position += 1;
                        Ok(inner)
                    }
                    None => Err("missing ')'".into()),
                    Some(other) => Err(format!("expected ')' but found {}", describe(other))),
                }
            }
            Some(Token::Check(text)) => parse_check(text, self.rule_index),
            Some(Token::Quoted(text)) => Err(format!(
                "a quoted string ({text}) must be the left side of a check, as in {text}:%(key)s"
            )),
            Some(other) => Err(format!("expected a check but found {}", describe(other))),
            None => Err("the rule ends where a check is expected".into()),
        }
    }
}

/// One `Or`/`And` node for several operands, merging nested nodes of the same kind.
fn flatten(mut operands: Vec<Check>, conjunction: bool) -> Check {
    if operands.len() == 1 {
        return operands.pop().expect("one operand");
    }
    let mut flat = Vec::with_capacity(operands.len());
    for operand in operands {
        match operand {
            Check::And(inner) if conjunction => flat.extend(inner),
            Check::Or(inner) if !conjunction => flat.extend(inner),
            other => flat.push(other),
        }
    }
    if conjunction {
        Check::And(flat)
    } else {
        Check::Or(flat)
    }
}

/// One check: `@`, `!`, `rule:`, `role:`, `field:`, or a generic `KEY:MATCH`.
fn parse_check(text: &str, rule_index: &mut dyn FnMut(&str) -> usize) -> Result<Check, String> {
    match text {
        "@" => return Ok(Check::Always),
        "!" => return Ok(Check::Never),
        _ => {}
    }
    let (kind, spec) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a check: expected KIND:VALUE, '@' or '!'"))?;
    match kind {
        "rule" => Ok(Check::Rule(rule_index(spec))),
        "role" if spec.contains('%') => Ok(Check::RoleFromTarget(Template::parse(spec)?)),
        "role" => Ok(Check::Role(spec.to_lowercase().into())),
        "field" => Ok(Check::Field(FieldCheck::parse(spec)?)),
        "http" | "https" => Err(format!("{kind} checks are not supported")),
        _ => Ok(Check::Generic {
            credential: Credential::parse(kind),
            expected: Template::parse(spec)?,
        }),
    }
}
