//! Configuration: defaults, then a TOML file (`--config`), then `REACH_*`
//! environment variables (`__` separates sections, e.g.
//! `REACH_SCORING__HALF_LIFE=14d`), then command-line flags. Every key and
//! its default is listed in `docs/configuration.md`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Json, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::{AuthConfig, TlsConfig},
    domain::{
        EventLimits, ScoringModel,
        address::{AddressConfig, AddressKey},
        message::LifecycleConfig,
        policy::SendPolicy,
        quiet_hours::QuietHoursConfig,
        route_health::RouteHealthConfig,
        sender_health::SenderHealthConfig,
    },
    providers::ProvidersConfig,
    storage::SledConfig,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Address of the admin HTTP port (`/metrics`, `/livez`, `/readyz`);
    /// empty to disable it.
    pub admin_listen: String,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Calls served at once across all connections; past it a call is
    /// refused at once with RESOURCE_EXHAUSTED (load shedding), never queued.
    pub max_concurrent_calls: usize,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Longest a call may run (a client's shorter deadline wins).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long in-flight calls may run after SIGTERM before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often background maintenance (dedupe expiry) runs.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Log format: "plain" or "json". The filter comes from `RUST_LOG`.
    pub log_format: LogFormat,
    pub store: SledConfig,
    pub limits: EventLimits,
    pub scoring: ScoringModel,
    pub providers: ProvidersConfig,
    pub lifecycle: LifecycleConfig,
    pub route_health: RouteHealthConfig,
    pub actions: ActionsConfig,
    pub addresses: AddressConfig,
    pub sender_health: SenderHealthConfig,
    pub quiet_hours: QuietHoursConfig,
    /// Send policies by campaign type, e.g. `[policies.otp]`; "default"
    /// governs requests without a campaign type.
    pub policies: BTreeMap<String, SendPolicy>,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    /// Direct webhook intake (`[webhooks]`, off by default).
    pub webhooks: crate::webhooks::WebhooksConfig,
}

/// The action outbox (`[actions]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// How long actions stay in the outbox for watchers to resume from.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: "127.0.0.1:9464".into(),
            data_dir: PathBuf::from("./reach-data"),
            shutdown_grace: Duration::from_secs(10),
            max_concurrent_calls: 1024,
            max_message_bytes: 4 << 20,
            request_timeout: Duration::from_secs(300),
            maintenance_interval: Duration::from_secs(600),
            log_format: LogFormat::Plain,
            store: SledConfig::default(),
            limits: EventLimits::default(),
            scoring: ScoringModel::default(),
            providers: ProvidersConfig::default(),
            lifecycle: LifecycleConfig::default(),
            route_health: RouteHealthConfig::default(),
            actions: ActionsConfig::default(),
            addresses: AddressConfig::default(),
            sender_health: SenderHealthConfig::default(),
            quiet_hours: QuietHoursConfig::default(),
            policies: BTreeMap::new(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            webhooks: crate::webhooks::WebhooksConfig::default(),
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// `REACH_*` variables that are not settings: the config file's path and
/// the client subcommands' connection flags, which may share a shell (or a
/// pod) with the server.
const CLIENT_ENV: &[&str] = &[
    "config",
    "server",
    "token",
    "ca_cert",
    "client_cert",
    "client_key",
];

impl Config {
    /// Layers defaults, `file`, the environment and `overrides`, then validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(format!("config file {} does not exist", file.display()));
            }
            // JSON too, for generators that cannot write TOML faithfully
            // (Helm's toToml turns every number into a float).
            figment = if file.extension().is_some_and(|e| e == "json") {
                figment.merge(Json::file_exact(file))
            } else {
                figment.merge(Toml::file_exact(file))
            };
        }
        let config: Config = figment
            .merge(Env::prefixed("REACH_").split("__").ignore(CLIENT_ENV))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.scoring.validate()?;
        if self.store.dedupe_window.is_zero() {
            return Err("store.dedupe_window must be positive".into());
        }
        if self.store.cleaning_interval < Duration::from_millis(1) {
            return Err("store.cleaning_interval must be at least 1ms".into());
        }
        if self.max_concurrent_calls == 0 || self.max_message_bytes == 0 {
            return Err("max_concurrent_calls and max_message_bytes must be positive".into());
        }
        if self.maintenance_interval.is_zero() {
            return Err("maintenance_interval must be positive".into());
        }
        if self.limits.max_id_bytes == 0 {
            return Err("limits.max_id_bytes must be positive".into());
        }
        self.admin_addr()?;
        if !self.addresses.hash_key.is_empty() {
            AddressKey::from_hex(&self.addresses.hash_key)
                .map_err(|e| format!("addresses.hash_key {e}"))?;
        }
        self.sender_health.validate()?;
        self.auth.validate()?;
        self.tls.validate()?;
        self.quiet_hours.validate()?;
        for (name, policy) in &self.policies {
            crate::engine::check_policy_name("policies", name).map_err(|e| e.to_string())?;
            policy
                .validate()
                .map_err(|e| format!("policies.{name}: {e}"))?;
        }
        if !self.addresses.default_region.is_empty() {
            crate::domain::address::check_region(&self.addresses.default_region)
                .map_err(|e| format!("addresses.default_region: {e}"))?;
        }
        for (name, d) in [
            ("lifecycle.sweep_every", self.lifecycle.sweep_every),
            ("route_health.window", self.route_health.window),
            (
                "route_health.outlook_baseline",
                self.route_health.outlook_baseline,
            ),
            (
                "route_health.evaluate_every",
                self.route_health.evaluate_every,
            ),
            ("actions.retention", self.actions.retention),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        // Tables are data: a broken one is a configuration error, found now.
        crate::providers::Providers::load(self.providers.clone())?;
        Ok(())
    }

    /// The admin port's address, `None` if disabled.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.admin_listen.trim().is_empty() {
            return Ok(None);
        }
        self.admin_listen
            .parse()
            .map(Some)
            .map_err(|e| format!("admin_listen {:?}: {e}", self.admin_listen))
    }

    /// The engine's part of the configuration; `address_key` comes from
    /// [`Config::address_key`].
    pub fn engine_settings(&self, address_key: AddressKey) -> crate::engine::Settings {
        crate::engine::Settings {
            scoring: self.scoring.clone(),
            limits: self.limits.clone(),
            lifecycle: self.lifecycle.clone(),
            route_health: self.route_health.clone(),
            addresses: self.addresses.clone(),
            sender_health: self.sender_health.clone(),
            quiet_hours: self.quiet_hours.clone(),
            policies: self.policies.clone(),
            address_key: Some(address_key),
        }
    }

    /// The key of address hashes: `addresses.hash_key` if set, else the one
    /// in `<data_dir>/address-hash.key`, generated on first start. Losing
    /// it orphans every stored address (new events get new ids), so it is
    /// written before anything is hashed with it.
    pub fn address_key(&self) -> Result<AddressKey, String> {
        if !self.addresses.hash_key.is_empty() {
            return AddressKey::from_hex(&self.addresses.hash_key);
        }
        let path = self.data_dir.join("address-hash.key");
        match std::fs::read_to_string(&path) {
            Ok(hex) => AddressKey::from_hex(&hex).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = AddressKey::new(crate::domain::address::random_key());
                write_secret(&path, &key.to_hex())
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                tracing::warn!(
                    path = %path.display(),
                    "generated a new address hash key; back it up with the data dir, or set addresses.hash_key"
                );
                Ok(key)
            }
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// The effective configuration as TOML, for `reach serve --print-config`.
    pub fn to_toml(&self) -> String {
        // Webhook signing keys are secrets (tokens are only hashes).
        let mut shown = self.clone();
        for endpoint in &mut shown.webhooks.endpoints {
            for key in endpoint.signing_keys.values_mut() {
                *key = "<redacted>".into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// Writes a file readable by its owner only, durably.
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own signature
    fn layers_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reach.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\n[scoring]\nhalf_life = \"14d\"\nsuppress_after_hard_fails = 5\n[scoring.sms]\nprior_mean = 0.8\nprior_strength = 4.0\nweight = 0.5\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("REACH_SCORING__SUPPRESS_AFTER_HARD_FAILS", "4");
            jail.set_env("REACH_STORE__COMMIT_GATHER", "2ms");
            let overrides = Overrides {
                data_dir: Some("/from-flag".into()),
                ..Overrides::default()
            };
            let config = Config::load(Some(&file), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(config.data_dir, PathBuf::from("/from-flag"));
            assert_eq!(config.scoring.half_life, Duration::from_secs(14 * 86400));
            assert_eq!(config.scoring.suppress_after_hard_fails, 4);
            assert_eq!(config.scoring.sms.weight, 0.5);
            assert_eq!(config.store.commit_gather, Duration::from_millis(2));
            assert_eq!(config.listen, Config::default().listen);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own signature
    fn rejects_unknown_keys_and_bad_values() {
        // In a Jail too: the other test's environment must not leak in.
        figment::Jail::expect_with(|jail| {
            let file = jail.directory().join("reach.toml");
            let load = |text: &str| {
                std::fs::write(&file, text).unwrap();
                Config::load(Some(&file), &Overrides::default())
            };
            assert!(
                load("[scoring]\nhalf_lfe = \"14d\"\n")
                    .unwrap_err()
                    .contains("half_lfe")
            );
            assert!(load("[scoring]\nsuppress_after_hard_fails = 0\n").is_err());
            assert!(
                load("[store]\ncleaning_interval = \"0s\"\n")
                    .unwrap_err()
                    .contains("store.cleaning_interval")
            );
            assert_eq!(
                load("[store]\ncleaning_interval = \"20ms\"\n")
                    .unwrap()
                    .store
                    .cleaning_interval,
                Duration::from_millis(20)
            );
            assert!(
                load("admin_listen = \"not an address\"\n")
                    .unwrap_err()
                    .contains("admin_listen")
            );
            assert!(
                load("[providers]\ntables_dir = \"/does/not/exist\"\n")
                    .unwrap_err()
                    .contains("tables_dir")
            );
            let missing = jail.directory().join("missing.toml");
            assert!(Config::load(Some(&missing), &Overrides::default()).is_err());
            Ok(())
        });
    }

    /// The example in docs/webhooks.md is a valid config.
    #[test]
    fn webhooks_doc_example_parses() {
        let doc = include_str!("../docs/webhooks.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/webhooks.md has a TOML example");
        let parsed: Config = toml::from_str(example).unwrap_or_else(|e| panic!("{e}"));
        let endpoint = &parsed.webhooks.endpoints[0];
        assert_eq!(endpoint.sns_topic_arns.len(), 1);
        assert_eq!(
            parsed.webhooks.sns,
            crate::webhooks::sns::SnsConfig::default()
        );
    }

    #[test]
    fn default_config_round_trips_through_toml() {
        let rendered = Config::default().to_toml();
        let parsed: Config = toml::from_str(&rendered).unwrap();
        assert_eq!(parsed, Config::default());
    }
}
