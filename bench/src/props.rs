//! Client property handling: `key=value` lists (as given to `--producer-props`
//! / `--consumer-props`), Java-style `.properties` files, and conversion into an
//! rdkafka [`ClientConfig`].

use std::path::Path;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;

/// Java-client-only properties that librdkafka does not know. Passing them to
/// librdkafka would abort client creation, so they are dropped with a warning
/// (they are common in configs copied from kafka-*-perf-test invocations).
const JAVA_ONLY_PROPS: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "buffer.memory",
    "interceptor.classes",
    "partitioner.class",
];

/// An ordered list of client properties. Later entries override earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Props {
    entries: Vec<(String, String)>,
}

impl Props {
    /// Parses a list of `key=value` strings (the value may contain `=`).
    pub fn parse_kv_list<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let mut props = Props::default();
        for item in items {
            let item = item.as_ref();
            let (k, v) = parse_kv(item)?;
            props.set(k, v);
        }
        Ok(props)
    }

    /// Loads a Java-style properties file (`key=value` or `key: value` lines;
    /// `#` and `!` start comment lines).
    pub fn load_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read properties file {}", path.display()))?;
        let mut props = Props::default();
        for (lineno, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let sep = line
                .find(['=', ':'])
                .with_context(|| format!("{}:{}: expected `key=value`, got {line:?}", path.display(), lineno + 1))?;
            let key = line[..sep].trim();
            let value = line[sep + 1..].trim();
            if key.is_empty() {
                bail!("{}:{}: empty property name", path.display(), lineno + 1);
            }
            props.set(key, value);
        }
        Ok(props)
    }

    /// Sets (or overrides) a property.
    pub fn set(&mut self, key: &str, value: &str) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value.to_string();
        } else {
            self.entries.push((key.to_string(), value.to_string()));
        }
    }

    /// Sets a property only if it is not set yet.
    pub fn set_default(&mut self, key: &str, value: &str) {
        if self.get(key).is_none() {
            self.set(key, value);
        }
    }

    /// Appends all properties of `other`, overriding existing keys.
    pub fn merge(&mut self, other: &Props) {
        for (k, v) in &other.entries {
            self.set(k, v);
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Returns `bootstrap.servers` (accepting librdkafka's `metadata.broker.list`
    /// alias), or an error explaining how to pass it.
    pub fn bootstrap(&self, flag: &str) -> Result<String> {
        match self.get("bootstrap.servers").or_else(|| self.get("metadata.broker.list")) {
            Some(v) if !v.trim().is_empty() => Ok(v.to_string()),
            _ => bail!(
                "no bootstrap server given: pass `{flag} bootstrap.servers=HOST:PORT` \
                 or `--bootstrap-server HOST:PORT`"
            ),
        }
    }

    /// Parses an integer property, if present.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .with_context(|| format!("property {key}={v:?} is not a non-negative integer")),
        }
    }

    /// Builds an rdkafka client config, dropping Java-only properties with a
    /// warning on stderr.
    pub fn to_client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.entries {
            if JAVA_ONLY_PROPS.contains(&k.as_str()) {
                eprintln!("warning: ignoring Java-client-only property {k}={v}");
                continue;
            }
            cfg.set(k, v);
        }
        cfg
    }
}

fn parse_kv(item: &str) -> Result<(&str, &str)> {
    let Some((k, v)) = item.split_once('=') else {
        bail!("invalid property {item:?}: expected key=value");
    };
    let k = k.trim();
    if k.is_empty() {
        bail!("invalid property {item:?}: empty key");
    }
    Ok((k, v.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kv_lists() {
        let p = Props::parse_kv_list(&["bootstrap.servers=127.0.0.1:9092", "acks=all", "sasl.password=a=b", "acks=1"])
            .unwrap();
        assert_eq!(p.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(p.get("acks"), Some("1"));
        assert_eq!(p.get("sasl.password"), Some("a=b"));
        assert!(Props::parse_kv_list(&["novalue"]).is_err());
        assert!(Props::parse_kv_list(&["=x"]).is_err());
    }

    #[test]
    fn set_default_does_not_override() {
        let mut p = Props::parse_kv_list(&["message.timeout.ms=5000"]).unwrap();
        p.set_default("message.timeout.ms", "30000");
        p.set_default("linger.ms", "5");
        assert_eq!(p.get_u64("message.timeout.ms").unwrap(), Some(5000));
        assert_eq!(p.get("linger.ms"), Some("5"));
    }

    #[test]
    fn bootstrap_is_required() {
        let p = Props::default();
        let err = p.bootstrap("--producer-props").unwrap_err().to_string();
        assert!(err.contains("bootstrap.servers"), "{err}");
    }

    #[test]
    fn loads_properties_file() {
        let dir = std::env::temp_dir().join(format!("chronik-bench-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.properties");
        std::fs::write(&path, "# comment\nbootstrap.servers = h:1\n\n! other\nacks: all\n").unwrap();
        let p = Props::load_file(&path).unwrap();
        assert_eq!(p.get("bootstrap.servers"), Some("h:1"));
        assert_eq!(p.get("acks"), Some("all"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
