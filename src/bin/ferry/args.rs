//! A small command-line parser: `--flag value`, `--flag=value`, boolean `--flag`,
//! repeatable flags, positional arguments. Hand-written because the runtime dependency
//! list is fixed (`docs/ARCHITECTURE.md` "Dependencies") and ferry's flags are few and
//! regular.

use std::collections::BTreeMap;
use std::fmt;

/// A usage error: exit code 2, with the flag and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a flag takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag` alone.
    Switch,
    /// `--flag VALUE`, at most once.
    Single,
    /// `--flag VALUE`, any number of times.
    Repeated,
}

/// Parsed arguments of one command.
#[derive(Debug, Default)]
pub struct Parsed {
    values: BTreeMap<&'static str, Vec<String>>,
    /// Arguments that are not flags, in order.
    pub positional: Vec<String>,
}

impl Parsed {
    /// The value of a single flag.
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.values
            .get(flag)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of a repeated flag.
    pub fn all(&self, flag: &str) -> &[String] {
        self.values.get(flag).map_or(&[], Vec::as_slice)
    }

    /// Whether a flag was given.
    pub fn has(&self, flag: &str) -> bool {
        self.values.contains_key(flag)
    }

    /// A single flag parsed as a number.
    pub fn number<T: std::str::FromStr>(&self, flag: &str) -> Result<Option<T>, UsageError> {
        self.get(flag)
            .map(|text| {
                text.parse()
                    .map_err(|_| UsageError(format!("--{flag}: '{text}' is not a valid number")))
            })
            .transpose()
    }
}

/// Parses `args` against `spec` (flag names without `--`). `-` alone is positional (stdin).
pub fn parse(
    command: &str,
    spec: &[(&'static str, Kind)],
    args: &[String],
) -> Result<Parsed, UsageError> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg != "-" {
                return Err(UsageError(format!(
                    "ferry {command}: unknown option '{arg}'"
                )));
            }
            parsed.positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(UsageError(format!(
                "ferry {command}: unknown option '--{name}' (see 'ferry {command} --help')"
            )));
        };
        let value = match (kind, inline) {
            (Kind::Switch, None) => String::new(),
            (Kind::Switch, Some(_)) => {
                return Err(UsageError(format!("--{name} takes no value")));
            }
            (_, Some(value)) => value,
            (_, None) => iter
                .next()
                .cloned()
                .ok_or_else(|| UsageError(format!("--{name} needs a value")))?,
        };
        let slot = parsed.values.entry(key).or_default();
        if kind == Kind::Single && !slot.is_empty() {
            return Err(UsageError(format!("--{name} given twice")));
        }
        slot.push(value);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_FLAGS: &[(&str, Kind)] = &[
        ("channel", Kind::Repeated),
        ("redis", Kind::Single),
        ("daemonize", Kind::Switch),
        ("count", Kind::Single),
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_values_and_positionals() {
        let parsed = parse(
            "run",
            TEST_FLAGS,
            &args(&[
                "--redis=redis://h",
                "--channel",
                "a",
                "--channel",
                "b",
                "--daemonize",
                "msg",
            ]),
        )
        .unwrap();
        assert_eq!(parsed.get("redis"), Some("redis://h"));
        assert_eq!(parsed.all("channel"), ["a", "b"]);
        assert!(parsed.has("daemonize"));
        assert_eq!(parsed.positional, ["msg"]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for (list, expected) in [
            (&["--nope"][..], "unknown option '--nope'"),
            (&["--redis"], "--redis needs a value"),
            (&["--redis", "a", "--redis", "b"], "--redis given twice"),
            (&["--daemonize=yes"], "--daemonize takes no value"),
            (&["-x"], "unknown option '-x'"),
        ] {
            let err = parse("run", TEST_FLAGS, &args(list)).unwrap_err();
            assert!(err.0.contains(expected), "{list:?}: {err}");
        }
        let parsed = parse("run", TEST_FLAGS, &args(&["--count", "x"])).unwrap();
        assert!(parsed.number::<u32>("count").is_err());
    }
}
