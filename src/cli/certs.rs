//! `falco-api certs`: a CA, a server certificate and client certificates for a quick mutual-TLS
//! set-up (what falcoctl's `tls install` did). Files are named as Falco's docs name them; private
//! keys get mode 0600.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Make ca.crt/ca.key, server.crt/server.key and client.crt/client.key in DIR.
    Generate(GenerateArgs),
    /// Issue another client certificate from DIR's CA: <NAME>.crt and <NAME>.key.
    Client(ClientArgs),
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// The server's name (CN and first SAN).
    #[arg(long, default_value = "localhost")]
    pub name: String,
    /// More server SANs: DNS names or IP addresses (repeatable).
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// The client certificate's CN (the identity roles are mapped to: cn:NAME).
    #[arg(long, default_value = "falco-api-client")]
    pub client_name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The directory holding ca.crt and ca.key; the new files go there too.
    #[arg(long)]
    pub dir: PathBuf,
    /// The client's CN, also the file names.
    pub name: String,
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// Valid from yesterday (clock skew) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) {
    use chrono::Datelike;
    let day = |d: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let now = chrono::Utc::now();
    params.not_before = day(now - chrono::Duration::days(1));
    params.not_after = day(now + chrono::Duration::days(days as i64));
}

/// Writes `contents` to `path` with its mode (0600 when `private`) set before any byte is
/// written, so a key is never readable by others, not even for a moment, whatever the umask or
/// the mode of a file it replaces.
fn write(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mode = if private { 0o600 } else { 0o644 };
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(mode)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.set_len(0)?;
        file.write_all(contents.as_bytes())
    })();
    written.with_context(|| format!("cannot write {}", path.display()))
}

fn leaf(cn: &str, sans: &[String], server: bool, days: u32) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for san in sans {
        params.subject_alt_names.push(match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(san.clone().try_into()?),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    validity(&mut params, days);
    Ok(params)
}

/// Writes `name.crt` and `name.key` signed by `issuer`.
fn issue(
    dir: &Path,
    file: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<()> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    write(&dir.join(format!("{file}.crt")), &cert.pem(), false)?;
    write(&dir.join(format!("{file}.key")), &key.serialize_pem(), true)
}

/// Makes the CA, the server certificate and one client certificate.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "falco-api CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, args.days);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(&args.out.join("ca.crt"), &ca_cert.pem(), false)?;
    write(&args.out.join("ca.key"), &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut sans = vec![args.name.clone()];
    sans.extend(args.sans.iter().cloned());
    issue(
        &args.out,
        "server",
        &leaf(&args.name, &sans, true, args.days)?,
        &issuer,
    )?;
    issue(
        &args.out,
        "client",
        &leaf(&args.client_name, &[], false, args.days)?,
        &issuer,
    )?;
    Ok(())
}

/// Issues another client certificate from an existing CA.
pub fn client(args: &ClientArgs) -> anyhow::Result<()> {
    let read = |f: &str| {
        std::fs::read_to_string(args.dir.join(f))
            .with_context(|| format!("cannot read {f} in {}", args.dir.display()))
    };
    let key = KeyPair::from_pem(&read("ca.key")?)?;
    let issuer = Issuer::from_ca_cert_pem(&read("ca.crt")?, key)?;
    let valid = !args.name.is_empty()
        && args
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    anyhow::ensure!(
        valid,
        "client name '{}' must be letters, digits, '.', '_' or '-'",
        args.name
    );
    issue(
        &args.dir,
        &args.name,
        &leaf(&args.name, &[], false, args.days)?,
        &issuer,
    )
}

pub fn run(command: CertsCommand) -> anyhow::Result<i32> {
    match command {
        CertsCommand::Generate(args) => {
            generate(&args)?;
            println!(
                "wrote ca.crt ca.key server.crt server.key client.crt client.key to {}",
                args.out.display()
            );
            println!(
                "server name: {} · client identity: cn:{}",
                args.name, args.client_name
            );
        }
        CertsCommand::Client(args) => {
            client(&args)?;
            println!(
                "wrote {0}.crt and {0}.key to {1} (identity cn:{0})",
                args.name,
                args.dir.display()
            );
        }
    }
    Ok(0)
}
