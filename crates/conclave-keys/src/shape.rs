//! Handshake-shaped input: the only messages a key server signs by default.
//!
//! A keyless edge needs signatures over exactly two kinds of content, so a
//! stolen edge identity should get nothing else: no signed certificate,
//! CSR, token or document. What it can still get is a signature that works
//! only as a TLS server's handshake signature, which is what it could do by
//! being the edge anyway.
//!
//! - TLS 1.3 CertificateVerify (RFC 8446 §4.4.3): 64 bytes of 0x20, the
//!   context string `TLS 1.3, server CertificateVerify`, one 0x00, then the
//!   transcript hash (32 bytes for SHA-256 suites, 48 for SHA-384).
//! - TLS 1.2 ServerKeyExchange signed params (RFC 5246 §7.4.3, RFC 8422
//!   §5.4): client_random (32) ‖ server_random (32) ‖ ServerECDHParams =
//!   curve_type 3 (named_curve), a u16 named group, a u8 point length and
//!   the point, whose length must be the group's: x25519 32, x448 56,
//!   uncompressed P-256 65, P-384 97, P-521 133 (starting with 0x04).

/// The fixed prefix of a TLS 1.3 server CertificateVerify's signed content.
const TLS13_PAD: [u8; 64] = [0x20; 64];
/// The context string of a server's CertificateVerify (followed by 0x00).
const TLS13_SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\0";
/// `ECCurveType.named_curve`.
const NAMED_CURVE: u8 = 3;
/// Both hello randoms.
const RANDOMS: usize = 64;

/// Which handshake signature a message is the content of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeShape {
    /// TLS 1.3 server CertificateVerify over a transcript hash of this many bytes.
    Tls13CertificateVerify {
        /// 32 (SHA-256) or 48 (SHA-384).
        hash_len: usize,
    },
    /// TLS 1.2 ECDHE ServerKeyExchange on this named group.
    Tls12ServerKeyExchange {
        /// The TLS NamedGroup code point.
        group: u16,
    },
}

/// Why a message is not handshake-shaped. Never holds the message itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotHandshake {
    /// Neither a TLS 1.3 CertificateVerify nor a TLS 1.2 ServerKeyExchange prefix.
    #[error(
        "{len}-byte message is neither TLS 1.3 CertificateVerify nor TLS 1.2 ECDHE ServerKeyExchange content"
    )]
    Unrecognised {
        /// The message length.
        len: usize,
    },
    /// A TLS 1.3 prefix with a hash of a length no suite uses.
    #[error("TLS 1.3 CertificateVerify content with a {0}-byte transcript hash (expected 32 or 48)")]
    Tls13HashLength(usize),
    /// A TLS 1.2 ServerKeyExchange on a group we do not know.
    #[error("TLS 1.2 ServerKeyExchange on unknown named group 0x{0:04x}")]
    UnknownGroup(u16),
    /// A TLS 1.2 ServerKeyExchange whose point does not fit its group.
    #[error("TLS 1.2 ServerKeyExchange point of group 0x{group:04x} is malformed")]
    BadPoint {
        /// The group.
        group: u16,
    },
}

/// The public-key length of each ECDHE group TLS 1.2 may use, and whether
/// it is an uncompressed NIST point (first byte 0x04).
fn group_point(group: u16) -> Option<(usize, bool)> {
    match group {
        0x0017 => Some((65, true)),  // secp256r1
        0x0018 => Some((97, true)),  // secp384r1
        0x0019 => Some((133, true)), // secp521r1
        0x001d => Some((32, false)), // x25519
        0x001e => Some((56, false)), // x448
        _ => None,
    }
}

/// Classifies `message`: `Ok` with its shape if it is the signed content of
/// a TLS 1.3 server CertificateVerify or a TLS 1.2 ECDHE ServerKeyExchange.
pub fn classify(message: &[u8]) -> Result<HandshakeShape, NotHandshake> {
    if let Some(rest) = message
        .strip_prefix(&TLS13_PAD[..])
        .and_then(|r| r.strip_prefix(TLS13_SERVER_CONTEXT))
    {
        return match rest.len() {
            32 | 48 => Ok(HandshakeShape::Tls13CertificateVerify { hash_len: rest.len() }),
            n => Err(NotHandshake::Tls13HashLength(n)),
        };
    }
    let unrecognised = NotHandshake::Unrecognised { len: message.len() };
    let params = message.get(RANDOMS..).ok_or(unrecognised)?;
    let [NAMED_CURVE, hi, lo, point_len, point @ ..] = params else {
        return Err(unrecognised);
    };
    let group = u16::from_be_bytes([*hi, *lo]);
    let (want, uncompressed) = group_point(group).ok_or(NotHandshake::UnknownGroup(group))?;
    let fits = usize::from(*point_len) == want
        && point.len() == want
        && (!uncompressed || point.first() == Some(&0x04));
    if !fits {
        return Err(NotHandshake::BadPoint { group });
    }
    Ok(HandshakeShape::Tls12ServerKeyExchange { group })
}

/// The content a TLS 1.3 server signs over `transcript_hash`: what tests,
/// benchmarks and probes send so they pass the shape check.
pub fn tls13_certificate_verify(transcript_hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(TLS13_PAD.len() + TLS13_SERVER_CONTEXT.len() + transcript_hash.len());
    m.extend_from_slice(&TLS13_PAD);
    m.extend_from_slice(TLS13_SERVER_CONTEXT);
    m.extend_from_slice(transcript_hash);
    m
}

/// The content a TLS 1.2 server signs in an ECDHE ServerKeyExchange.
pub fn tls12_server_key_exchange(
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    group: u16,
    point: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(RANDOMS + 4 + point.len());
    m.extend_from_slice(client_random);
    m.extend_from_slice(server_random);
    m.push(NAMED_CURVE);
    m.extend_from_slice(&group.to_be_bytes());
    m.push(point.len() as u8);
    m.extend_from_slice(point);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A real TLS 1.3 CertificateVerify content, spelled out byte by byte
    /// from RFC 8446 §4.4.3 rather than with our own builder.
    #[test]
    fn accepts_rfc8446_certificate_verify_content() {
        let mut m = vec![0x20u8; 64];
        m.extend_from_slice(b"TLS 1.3, server CertificateVerify");
        m.push(0);
        m.extend_from_slice(&[0xab; 32]);
        assert_eq!(m.len(), 130);
        assert_eq!(
            classify(&m),
            Ok(HandshakeShape::Tls13CertificateVerify { hash_len: 32 })
        );
        assert_eq!(m, tls13_certificate_verify(&[0xab; 32]));
        let m48 = tls13_certificate_verify(&[1; 48]);
        assert_eq!(
            classify(&m48),
            Ok(HandshakeShape::Tls13CertificateVerify { hash_len: 48 })
        );
    }

    #[test]
    fn refuses_other_tls13_contexts_and_hash_lengths() {
        for n in [0, 31, 33, 47, 49, 64, 1000] {
            assert_eq!(
                classify(&tls13_certificate_verify(&vec![0; n])),
                Err(NotHandshake::Tls13HashLength(n))
            );
        }
        // The client's context (a client-auth signature) is not ours to make.
        let mut client = vec![0x20u8; 64];
        client.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
        client.extend_from_slice(&[0; 32]);
        assert!(classify(&client).is_err());
        // Fewer spaces.
        let short = tls13_certificate_verify(&[0; 32]);
        assert!(classify(&short[1..]).is_err());
    }

    #[test]
    fn accepts_tls12_ecdhe_params_with_the_groups_point_length() {
        let (c, s) = ([1u8; 32], [2u8; 32]);
        for (group, len, first) in [
            (0x001d, 32, 0x55),
            (0x001e, 56, 0x55),
            (0x0017, 65, 0x04),
            (0x0018, 97, 0x04),
            (0x0019, 133, 0x04),
        ] {
            let mut point = vec![first; len];
            point[0] = first;
            let m = tls12_server_key_exchange(&c, &s, group, &point);
            assert_eq!(m.len(), 64 + 4 + len);
            assert_eq!(classify(&m), Ok(HandshakeShape::Tls12ServerKeyExchange { group }));
            // One byte short, one byte long (with the length byte following).
            let mut p = point.clone();
            p.pop();
            assert_eq!(
                classify(&tls12_server_key_exchange(&c, &s, group, &p)),
                Err(NotHandshake::BadPoint { group })
            );
            p.extend_from_slice(&[4, 4]);
            assert_eq!(
                classify(&tls12_server_key_exchange(&c, &s, group, &p)),
                Err(NotHandshake::BadPoint { group })
            );
            // Trailing bytes after a well-formed point.
            let mut t = m.clone();
            t.push(0);
            assert_eq!(classify(&t), Err(NotHandshake::BadPoint { group }));
        }
        // A compressed NIST point is not what TLS 1.2 sends.
        let mut p = vec![0x02; 65];
        p[0] = 0x02;
        assert_eq!(
            classify(&tls12_server_key_exchange(&c, &s, 0x0017, &p)),
            Err(NotHandshake::BadPoint { group: 0x0017 })
        );
        assert_eq!(
            classify(&tls12_server_key_exchange(&c, &s, 0x0100, &[0; 256 - 1])),
            Err(NotHandshake::UnknownGroup(0x0100))
        );
    }

    #[test]
    fn refuses_arbitrary_bytes() {
        for m in [&b""[..], b"hello", &[7u8; 100], &[0u8; 64], &[0x20; 200]] {
            assert!(classify(m).is_err(), "{} bytes", m.len());
        }
        // An explicit-curve (curve_type 1) or FFDHE-looking body.
        let mut m = vec![0u8; 64];
        m.extend_from_slice(&[1, 0, 0x17, 65]);
        m.extend_from_slice(&[4; 65]);
        assert_eq!(classify(&m), Err(NotHandshake::Unrecognised { len: m.len() }));
    }

    proptest! {
        #[test]
        fn classify_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = classify(&buf);
        }
    }
}
