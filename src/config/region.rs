//! `[[regions]]`: where each region's database is and how to log in to it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tiberius::{AuthMethod, EncryptionLevel};

use super::ado::AdoString;
use super::secret::{Secret, REDACTED};
use crate::error::ConfigError;

/// The default SQL Server port.
pub const DEFAULT_PORT: u16 = 1433;

/// The default `application_name` (SQL Server's `APP_NAME()`).
pub const DEFAULT_APPLICATION_NAME: &str = "mssql-resilience";

/// The longest region name: 64 characters (it is a metric label and a breaker name).
pub const MAX_REGION_NAME_CHARS: usize = 64;

/// The longest value of a field the TDS login packet (LOGIN7) carries: `host` (sent as the
/// server name), `database`, `user`, `password` and `application_name`, and the same keys
/// in a connection string. TDS counts UTF-16 code units, and so does this limit.
pub const MAX_LOGIN_FIELD_CHARS: usize = 128;

/// The longest `instance_name`: 16 characters, SQL Server's own limit on instance names.
pub const MAX_INSTANCE_NAME_CHARS: usize = 16;

/// The longest `connection_string`: 4096 characters.
pub const MAX_CONNECTION_STRING_CHARS: usize = 4096;

/// The largest CA certificate file read (`trust_server_certificate_ca`, or a connection
/// string's `TrustServerCertificateCA`): 1 MiB.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

pub use crate::failover::Role;

/// Transport security of a region's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// TLS, and the server certificate is validated (`"required"`, the default).
    #[default]
    Required,
    /// TLS without certificate validation (`"trust_server_certificate"`): no protection
    /// against a man in the middle. An explicit opt-in for test servers.
    TrustServerCertificate,
    /// Plaintext, including the login (`"not_supported"`). An explicit opt-in for the
    /// local testkit server only.
    NotSupported,
}

/// How a region's connections log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authentication {
    /// SQL Server authentication: `user` and `password`, or the connection string's
    /// (`"sql"`, the default).
    #[default]
    Sql,
    /// Microsoft Entra ID (`"entra"`): every new connection logs in with an access token
    /// from the [provider](crate::auth::AccessTokenProvider) given to
    /// [`StackBuilder::access_tokens`](crate::StackBuilder::access_tokens). `user` and
    /// `password` (and the connection string's) must be unset.
    Entra,
}

/// One region: its name, how to reach its database, and its role.
///
/// Set **either** `connection_string` (an ADO.NET string, e.g.
/// `server=tcp:myfog.database.windows.net,1433;database=app;user id=app;password=…`)
/// **or** `host` with `user` and `password` (and optionally `port`, `instance_name`,
/// `database`). With a connection string, `host`, `port`, `instance_name`, `database`,
/// `user` and `password` must be left unset: they would silently compete with the
/// string's own keys.
///
/// `encryption`, `role` and `application_name` apply to both forms. The explicit
/// `encryption` always wins over the connection string's `encrypt`,
/// `TrustServerCertificate` (and, with `trust_server_certificate`,
/// `TrustServerCertificateCA`) keys, which are ignored; `role` sets the
/// `ApplicationIntent` (except `auto`, which keeps the string's); `application_name`
/// applies unless the string sets `Application Name`.
///
/// `Debug` never shows `password` or `connection_string` (they are [`Secret`]s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Lower-case `[a-z0-9_-]`, 1–64 characters, unique; used as the breaker name and a
    /// metric label.
    pub name: String,
    /// An ADO.NET connection string (it holds the password, hence a [`Secret`]), at most
    /// 4096 characters, without control characters other than tab and line breaks. The
    /// login fields it sets (`server`'s host and instance, `database`, `user id`,
    /// `password`, `application name`, `workstation id`) follow the limits of the fields
    /// below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<Secret>,
    /// Host name or IP address, 1–128 characters (TDS sends it as the login's server
    /// name), without whitespace or control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port, not 0. Default 1433. With `instance_name` and the default port, SQL
    /// Browser's port (1434) is asked for the instance's port instead.
    #[serde(default = "default_port")]
    pub port: u16,
    /// A named instance (resolved through SQL Browser), 1–16 characters, without
    /// whitespace or control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// The database, 1–128 characters without control characters; the login's default
    /// database when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// SQL Server login name, 1–128 characters without control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SQL Server login password, 0–128 characters without control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Default `"required"`.
    #[serde(default)]
    pub encryption: Encryption,
    /// A CA certificate file to trust for the server's certificate, besides the system's
    /// roots: a private CA, or a test server's (the testkit writes its CA with
    /// `TlsIdentity::write_ca_pem`). `.pem` or `.crt` (PEM, one or more certificates) or
    /// `.der`, at most 1 MiB. Only with `host` and `encryption = "required"` (a connection
    /// string says `TrustServerCertificateCA=<path>`, which is checked the same way).
    /// Read when the configuration is loaded, so a wrong path fails the load rather than
    /// every connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_server_certificate_ca: Option<PathBuf>,
    /// `APP_NAME()` on the server, at most 128 characters without control characters.
    /// Default `"mssql-resilience"`; `""` sends none.
    #[serde(
        default = "default_application_name",
        serialize_with = "serialize_application_name",
        deserialize_with = "deserialize_application_name"
    )]
    pub application_name: Option<String>,
    /// Default `"auto"`.
    #[serde(default)]
    pub role: Role,
    /// `"sql"` (the default) or `"entra"`.
    #[serde(default)]
    pub authentication: Authentication,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_application_name() -> Option<String> {
    Some(DEFAULT_APPLICATION_NAME.to_owned())
}

fn serialize_application_name<S: Serializer>(
    name: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(name.as_deref().unwrap_or(""))
}

fn deserialize_application_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(deserializer)?;
    Ok(Some(name).filter(|n| !n.is_empty()))
}

impl Default for RegionConfig {
    /// Every field at its default, `name` empty (which does not validate: set it).
    fn default() -> Self {
        RegionConfig {
            name: String::new(),
            connection_string: None,
            host: None,
            port: DEFAULT_PORT,
            instance_name: None,
            database: None,
            user: None,
            password: None,
            encryption: Encryption::default(),
            trust_server_certificate_ca: None,
            application_name: default_application_name(),
            role: Role::default(),
            authentication: Authentication::default(),
        }
    }
}

/// Connection-string keys that the explicit `encryption` replaces.
const ENCRYPTION_KEYS: &[&str] = &["encrypt", "trustservercertificate"];
const CA_KEY: &str = "trustservercertificateca";
const SERVER_KEYS: &[&str] = &["server", "data source"];
const APPLICATION_NAME_KEYS: &[&str] = &["application name", "applicationname"];
const USER_KEYS: &[&str] = &["uid", "username", "user", "user id"];
const PASSWORD_KEYS: &[&str] = &["password", "pwd"];

/// Connection-string keys whose values tiberius puts into the login packet, and the
/// field each corresponds to (for messages).
const LOGIN_KEYS: &[(&[&str], &str)] = &[
    (&["database", "initial catalog", "databasename"], "database"),
    (USER_KEYS, "user id"),
    (PASSWORD_KEYS, "password"),
    (APPLICATION_NAME_KEYS, "application name"),
    (&["workstationid", "workstation id"], "workstation id"),
];

/// True for a name usable as a metric label: non-empty lower-case `[a-z0-9_-]`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Length as TDS counts it: UTF-16 code units.
fn tds_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// What is wrong with a login-packet value, if anything: too long (over `max` UTF-16
/// units), or holding a control character (or, when `no_spaces`, whitespace).
fn text_problem(text: &str, max: usize, no_spaces: bool) -> Option<String> {
    let len = tds_len(text);
    if len > max {
        return Some(format!(
            "must be at most {max} characters (the limit of the TDS login packet); it has {len}"
        ));
    }
    if no_spaces && text.chars().any(char::is_whitespace) {
        return Some("must not contain whitespace".to_owned());
    }
    if text.chars().any(char::is_control) {
        return Some(
            "must not contain control characters (such as NUL or a line break)".to_owned(),
        );
    }
    None
}

/// Checks an optional text field; `allow_empty` says whether `""` is a value.
fn check_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
    no_spaces: bool,
    allow_empty: bool,
) -> Result<(), ConfigError> {
    let Some(text) = value else { return Ok(()) };
    if text.is_empty() && !allow_empty {
        return Err(ConfigError::new(
            field,
            text,
            "must not be empty (leave it unset instead)",
        ));
    }
    match text_problem(text, max, no_spaces) {
        Some(reason) => Err(ConfigError::new(field, text, reason)),
        None => Ok(()),
    }
}

impl RegionConfig {
    /// Checks the region on its own (everything but the uniqueness of its name).
    ///
    /// A region does not know its index, so the errors of this method, of
    /// [`tiberius_config`](Self::tiberius_config) and of [`address`](Self::address) name
    /// fields relative to the region (`port`, `connection_string`): prefix them with
    /// `.within("regions[<index>]")`, as [`Config::validate`](super::Config::validate)
    /// does (it runs these same checks, so after a successful load they cannot fail).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", &self.name, "must not be empty"));
        }
        let name_chars = self.name.chars().count();
        if name_chars > MAX_REGION_NAME_CHARS {
            return Err(ConfigError::new(
                "name",
                &self.name,
                format!(
                    "must be at most {MAX_REGION_NAME_CHARS} characters (it is used as a metric label); it has {name_chars}"
                ),
            ));
        }
        if !is_valid_name(&self.name) {
            return Err(ConfigError::new(
                "name",
                &self.name,
                "must be lower-case letters, digits, `_` or `-` (it is used as a metric label)",
            ));
        }
        if self.port == 0 {
            return Err(ConfigError::new("port", 0, "must not be 0"));
        }
        match (&self.connection_string, &self.host) {
            (Some(_), Some(host)) => {
                return Err(ConfigError::new(
                    "host",
                    host,
                    "must not be set together with `connection_string`: use one or the other",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "connection_string",
                    None::<()>,
                    "either `connection_string` or `host` (with `user` and `password`) is required",
                ))
            }
            (Some(connection_string), None) => {
                let also = "must not be set together with `connection_string` (put it in the connection string)";
                if let Some(v) = &self.instance_name {
                    return Err(ConfigError::new("instance_name", v, also));
                }
                if let Some(v) = &self.database {
                    return Err(ConfigError::new("database", v, also));
                }
                if let Some(v) = &self.user {
                    return Err(ConfigError::new("user", v, also));
                }
                if let Some(v) = &self.password {
                    return Err(ConfigError::new("password", v, also));
                }
                if let Some(v) = &self.trust_server_certificate_ca {
                    return Err(ConfigError::new(
                        "trust_server_certificate_ca",
                        v,
                        "must not be set together with `connection_string` (write `TrustServerCertificateCA=<path>` in it)",
                    ));
                }
                if self.port != DEFAULT_PORT {
                    return Err(ConfigError::new(
                        "port",
                        self.port,
                        "must not be set together with `connection_string` (write `server=tcp:host,port`)",
                    ));
                }
                if connection_string.expose().trim().is_empty() {
                    return Err(ConfigError::new(
                        "connection_string",
                        connection_string,
                        "must not be empty",
                    ));
                }
            }
            (None, Some(host)) => {
                if host.trim().is_empty() {
                    return Err(ConfigError::new("host", host, "must not be empty"));
                }
                if self.authentication == Authentication::Entra {
                    let token = "must not be set with `authentication = \"entra\"` (the access token logs in)";
                    if let Some(v) = &self.user {
                        return Err(ConfigError::new("user", v, token));
                    }
                    if let Some(v) = &self.password {
                        return Err(ConfigError::new("password", v, token));
                    }
                } else if self.user.is_none() {
                    return Err(ConfigError::new(
                        "user",
                        None::<()>,
                        "is required with `host` (SQL Server authentication)",
                    ));
                } else if self.password.is_none() {
                    return Err(ConfigError::new(
                        "password",
                        None::<()>,
                        "is required with `host` (SQL Server authentication)",
                    ));
                }
            }
        }
        self.build().map(drop)
    }

    /// The tiberius configuration for this region (checked only as far as building it
    /// needs — including the limits on every value the login packet carries;
    /// [`validate`](Self::validate) does the rest).
    ///
    /// From `connection_string` (through `tiberius::Config::from_ado_string`) or from the
    /// fields. Then `encryption` is applied, and it wins over the string's `encrypt` and
    /// `TrustServerCertificate` keys: `required` → `EncryptionLevel::Required` with the
    /// certificate validated; `trust_server_certificate` → `Required` plus `trust_cert()`;
    /// `not_supported` → `EncryptionLevel::NotSupported`. `role` sets the
    /// `ApplicationIntent` (`read_only` → read-only).
    ///
    /// Errors name `connection_string` (relative to the region, see
    /// [`validate`](Self::validate)) and never show the connection string or the password:
    /// the value is `***`.
    pub fn tiberius_config(&self) -> Result<tiberius::Config, ConfigError> {
        self.build()
    }

    /// The host and port to dial, as tiberius will (`get_addr()`). Errors as
    /// [`tiberius_config`](Self::tiberius_config).
    pub fn address(&self) -> Result<(String, u16), ConfigError> {
        let config = self.tiberius_config()?;
        let addr = config.get_addr();
        addr.rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            .ok_or_else(|| ConfigError::new("host", addr, "is not a `host:port` address"))
    }

    /// Checks the length and characters of every text field (not the connection string's
    /// contents: [`build`](Self::build) does, once it is parsed).
    fn check_texts(&self) -> Result<(), ConfigError> {
        let max = MAX_LOGIN_FIELD_CHARS;
        check_text("host", self.host.as_deref(), max, true, true)?;
        check_text(
            "instance_name",
            self.instance_name.as_deref(),
            MAX_INSTANCE_NAME_CHARS,
            true,
            false,
        )?;
        check_text("database", self.database.as_deref(), max, false, false)?;
        check_text("user", self.user.as_deref(), max, false, false)?;
        check_text(
            "application_name",
            self.application_name.as_deref(),
            max,
            false,
            true,
        )?;
        if let Some(password) = &self.password {
            if let Some(reason) = text_problem(password.expose(), max, false) {
                return Err(ConfigError::new("password", password, reason));
            }
        }
        if let Some(secret) = &self.connection_string {
            let text = secret.expose();
            let chars = text.chars().count();
            if chars > MAX_CONNECTION_STRING_CHARS {
                return Err(ConfigError::new(
                    "connection_string",
                    secret,
                    format!(
                        "must be at most {MAX_CONNECTION_STRING_CHARS} characters; it has {chars}"
                    ),
                ));
            }
            if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(ConfigError::new(
                    "connection_string",
                    secret,
                    "must not contain control characters (such as NUL)",
                ));
            }
        }
        Ok(())
    }

    /// Checks the login fields a parsed connection string sets, without showing them.
    fn check_connection_string(secret: &Secret, ado: &AdoString<'_>) -> Result<(), ConfigError> {
        let problem = |key: &str, reason: String| {
            ConfigError::new("connection_string", secret, format!("its `{key}` {reason}"))
        };
        for pair in &ado.pairs {
            if SERVER_KEYS.contains(&pair.key.as_str()) {
                let server = pair.value.trim();
                let server = server
                    .get(..4)
                    .filter(|p| p.eq_ignore_ascii_case("tcp:"))
                    .map_or(server, |_| &server[4..]);
                let server = server.split(',').next().unwrap_or_default().trim();
                let (host, instance) = match server.split_once('\\') {
                    Some((host, instance)) => (host, Some(instance)),
                    None => (server, None),
                };
                if let Some(reason) = text_problem(host, MAX_LOGIN_FIELD_CHARS, true) {
                    return Err(problem("server", format!("host {reason}")));
                }
                if let Some(instance) = instance {
                    if let Some(reason) = text_problem(instance, MAX_INSTANCE_NAME_CHARS, true) {
                        return Err(problem("server", format!("instance name {reason}")));
                    }
                }
                continue;
            }
            for (keys, name) in LOGIN_KEYS {
                if keys.contains(&pair.key.as_str()) {
                    if let Some(reason) = text_problem(&pair.value, MAX_LOGIN_FIELD_CHARS, false) {
                        return Err(problem(name, reason));
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn build(&self) -> Result<tiberius::Config, ConfigError> {
        self.check_texts()?;
        let mut config = match &self.connection_string {
            Some(secret) => {
                let text = secret.expose();
                let ado = AdoString::parse(text).map_err(|reason| {
                    ConfigError::new(
                        "connection_string",
                        secret,
                        format!("is not a valid ADO.NET connection string: {reason}"),
                    )
                })?;
                if ado.get(SERVER_KEYS).is_none() {
                    return Err(ConfigError::new(
                        "connection_string",
                        secret,
                        "has no `server` key (e.g. `server=tcp:myhost.database.windows.net,1433`)",
                    ));
                }
                Self::check_connection_string(secret, &ado)?;
                if self.encryption == Encryption::Required {
                    if let Some(ca) = ado.get(&[CA_KEY]) {
                        if let Some(reason) = ca_file_problem(Path::new(ca.trim())) {
                            return Err(ConfigError::new(
                                "connection_string",
                                secret,
                                format!("its `TrustServerCertificateCA` file {reason}"),
                            ));
                        }
                    }
                }
                if self.authentication == Authentication::Entra
                    && (ado.get(PASSWORD_KEYS).is_some() || ado.get(USER_KEYS).is_some())
                {
                    return Err(ConfigError::new(
                        "connection_string",
                        secret,
                        "must not hold `user id` or `password` with `authentication = \"entra\"` (the access token logs in)",
                    ));
                }
                let mut drop = ENCRYPTION_KEYS.to_vec();
                if self.encryption == Encryption::TrustServerCertificate {
                    // tiberius panics on trust_cert() after a CA; no CA is needed anyway.
                    drop.push(CA_KEY);
                }
                let mut config =
                    tiberius::Config::from_ado_string(&ado.without(&drop)).map_err(|e| {
                        ConfigError::new(
                            "connection_string",
                            secret,
                            format!(
                                "is not a valid connection string: {}",
                                scrub(&e.to_string(), text, ado.secrets())
                            ),
                        )
                    })?;
                if ado.get(APPLICATION_NAME_KEYS).is_none() {
                    if let Some(name) = &self.application_name {
                        config.application_name(name);
                    }
                }
                config
            }
            None => {
                let mut config = tiberius::Config::new();
                if let Some(host) = &self.host {
                    config.host(host);
                }
                match &self.instance_name {
                    Some(instance) => {
                        config.instance_name(instance);
                        if self.port != DEFAULT_PORT {
                            config.port(self.port);
                        }
                    }
                    None => config.port(self.port),
                }
                if let Some(database) = &self.database {
                    config.database(database);
                }
                if self.authentication == Authentication::Sql {
                    config.authentication(AuthMethod::sql_server(
                        self.user.as_deref().unwrap_or_default(),
                        self.password.as_ref().map_or("", Secret::expose),
                    ));
                }
                if let Some(name) = &self.application_name {
                    config.application_name(name);
                }
                config
            }
        };
        if let Some(ca) = &self.trust_server_certificate_ca {
            let field = "trust_server_certificate_ca";
            match self.encryption {
                Encryption::Required => {}
                Encryption::TrustServerCertificate => {
                    return Err(ConfigError::new(
                        field,
                        ca,
                        "must not be set with `encryption = \"trust_server_certificate\"` (which trusts any certificate): use `required` to validate against this CA",
                    ))
                }
                Encryption::NotSupported => {
                    return Err(ConfigError::new(
                        field,
                        ca,
                        "must not be set with `encryption = \"not_supported\"` (no TLS): use `required`",
                    ))
                }
            }
            if let Some(reason) = ca_file_problem(ca) {
                return Err(ConfigError::new(field, ca, reason));
            }
            config.trust_cert_ca(ca.display());
        }
        match self.encryption {
            Encryption::Required => config.encryption(EncryptionLevel::Required),
            Encryption::TrustServerCertificate => {
                config.encryption(EncryptionLevel::Required);
                config.trust_cert();
            }
            Encryption::NotSupported => config.encryption(EncryptionLevel::NotSupported),
        }
        match self.role {
            Role::Auto => {}
            Role::ReadWrite => config.readonly(false),
            Role::ReadOnly => config.readonly(true),
        }
        Ok(config)
    }
}

/// Why a CA certificate file cannot be used, if it cannot. tiberius reads it at every
/// connect, and a bad one fails each connect with an I/O error (which looks transient):
/// checked up front instead. tiberius reads `.pem` / `.crt` as PEM and `.der` as DER.
fn ca_file_problem(path: &Path) -> Option<String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let pem = match ext.as_deref() {
        Some("pem" | "crt") => true,
        Some("der") => false,
        _ => {
            return Some("must end in `.pem`, `.crt` or `.der` (the formats tiberius reads)".into())
        }
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Some("is not a file".into()),
        Ok(m) if m.len() > MAX_CA_FILE_BYTES => {
            return Some(format!(
                "is larger than {MAX_CA_FILE_BYTES} bytes: not a CA certificate"
            ))
        }
        Ok(_) => {}
        Err(e) => return Some(format!("cannot be read: {e}")),
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let marker: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if pem && !bytes.windows(marker.len()).any(|w| w == marker) {
        return Some("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    if !pem && bytes.is_empty() {
        return Some("is empty".into());
    }
    None
}

/// tiberius' message without its long quoting hint, and with the connection string and
/// its passwords replaced by `***` should it ever quote them.
fn scrub<'a>(message: &str, text: &str, secrets: impl Iterator<Item = &'a str>) -> String {
    let message = message
        .strip_prefix("Conversion error: ")
        .unwrap_or(message);
    let mut message = match message.find(". hint:") {
        Some(end) => message[..end].to_owned(),
        None => message.to_owned(),
    };
    if !text.is_empty() {
        message = message.replace(text, REDACTED);
    }
    for secret in secrets {
        message = message.replace(secret, REDACTED);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["westeurope", "eu-west_1", "a", "0"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "West", "we st", "wé", "a.b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn scrub_removes_the_hint_and_secrets() {
        let m = "Conversion error: bad value hunter2 in server=x;password=hunter2. hint: quote it";
        assert_eq!(
            scrub(m, "server=x;password=hunter2", ["hunter2"].into_iter()),
            "bad value *** in ***"
        );
    }
}
