//! Certificates made by the tests (rcgen): a CA, server certificates — good, for the
//! wrong name, expired, from an unknown CA — and a client certificate, as PEM files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, written as `<name>.pem` and `<name>.key`.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

/// A certificate authority that signs the others.
pub struct Authority {
    pub cert: PathBuf,
    params: CertificateParams,
    key: KeyPair,
}

impl Authority {
    /// A new CA named `name`, written to `dir/<file>.pem`.
    pub fn new(dir: &Path, file: &str, name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{file}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Authority {
            cert: path,
            params,
            key,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid from `from` to
    /// `until` (years), written to `dir/<file>.{pem,key}`.
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str], from: i32, until: i32) -> Pair {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(until, 1, 1);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Pair {
            cert: cert_path,
            key: key_path,
            der: cert.der().to_vec(),
        }
    }
}

/// Everything the TLS tests need, in `dir`.
pub struct Set {
    pub ca: Authority,
    /// For `localhost` and `127.0.0.1`, valid 2020–2099.
    pub server: Pair,
    /// For `elsewhere.example` only.
    pub wrong_name: Pair,
    /// For `localhost`, expired in 2021.
    pub expired: Pair,
    /// For `localhost`, signed by a CA nobody trusts.
    pub unknown_ca: Pair,
    /// ferry's own, for mutual TLS.
    pub client: Pair,
}

impl Set {
    pub fn new(dir: &Path) -> Set {
        let ca = Authority::new(dir, "ca", "ferry test CA");
        let stranger = Authority::new(dir, "stranger-ca", "nobody trusts me");
        let local = ["localhost", "127.0.0.1"];
        Set {
            server: ca.issue(dir, "server", &local, 2020, 2099),
            wrong_name: ca.issue(dir, "wrong-name", &["elsewhere.example"], 2020, 2099),
            expired: ca.issue(dir, "expired", &local, 2019, 2021),
            unknown_ca: stranger.issue(dir, "unknown-ca", &local, 2020, 2099),
            client: ca.issue(dir, "client", &["ferry-client"], 2020, 2099),
            ca,
        }
    }
}
