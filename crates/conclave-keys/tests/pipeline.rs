//! Pipelining on one key-server connection (docs/protocol.md, wire
//! contract): requests written back to back, before any reply is read, are
//! answered strictly in order; a malformed frame among them gets its own
//! error reply in its place and the frames around it are still answered.
//! Both connection modes of the RPC server (reactor, threads) are checked.

use conclave_keys::op::{self, sign::SignRequest};
use conclave_keys::rustls::SignatureScheme;
use conclave_keys::shape::tls13_certificate_verify;
use conclave_keys::KeyServerOptions;
use conclave_rpc::frame::read_frame_sync;
use conclave_rpc::pki::SiteKey;
use conclave_rpc::stream::connect_sync;
use conclave_rpc::{ClientOptions, ConnectionMode, Credentials, Frame, Header, Role, Status};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

mod support;
use support::{start_in, verify, Running};

const MODES: [ConnectionMode; 2] = [ConnectionMode::Reactor, ConnectionMode::Threads];

/// The site certificate's public key (SPKI DER).
fn spki(certs: &Path) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let chain = conclave_rpc::tls::load_certs(&certs.join("site/server.crt")).unwrap();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(chain[0].as_ref()).unwrap();
    cert.public_key().raw.to_vec()
}

/// A raw mTLS stream to the key server as the edge.
fn connect(ks: &Running) -> Box<dyn conclave_rpc::stream::SyncStream> {
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let opts = ClientOptions::mtls(&creds, Role::KeyServer).unwrap();
    connect_sync(
        &ks.endpoint,
        opts.tls.as_ref(),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .unwrap()
}

/// The i-th message: distinct per request, so a reply out of order fails
/// verification.
fn message(i: usize) -> Vec<u8> {
    tls13_certificate_verify(&[i as u8; 32])
}

fn sign_frame(i: usize, scheme: SignatureScheme) -> Vec<u8> {
    Frame::new(op::SIGN, SignRequest::encode("server", scheme, &message(i))).encode()
}

fn pipelines_64_signatures_in_order(opts: KeyServerOptions) {
    let sites = [
        (SiteKey::EcdsaP256, SignatureScheme::ECDSA_NISTP256_SHA256),
        (SiteKey::Rsa2048, SignatureScheme::RSA_PSS_SHA256),
    ];
    for ((site, scheme), mode) in sites.into_iter().flat_map(|s| MODES.map(|m| (s, m))) {
        let ks = start_in(site, opts.clone(), mode);
        let spki = spki(&ks.certs);
        let mut s = connect(&ks);
        let wire: Vec<u8> = (0..64).flat_map(|i| sign_frame(i, scheme)).collect();
        s.write_all(&wire).unwrap();
        s.flush().unwrap();
        for i in 0..64 {
            let f = read_frame_sync(&mut s, 1 << 16)
                .unwrap()
                .expect("a reply per request");
            assert_eq!(f.status(), Status::OK, "{site:?} {mode} request {i}");
            let sig = op::sign::decode_reply(&f.body).unwrap();
            assert!(
                verify(&spki, scheme, &message(i), &sig),
                "{site:?} {mode}: reply {i} out of order"
            );
        }
    }
}

#[test]
fn sixty_four_pipelined_signs_get_sixty_four_in_order_replies() {
    pipelines_64_signatures_in_order(KeyServerOptions::default());
}

#[test]
fn sixty_four_pipelined_signs_in_order_with_the_signing_pool() {
    pipelines_64_signatures_in_order(KeyServerOptions {
        inline: false,
        ..KeyServerOptions::default()
    });
}

#[test]
fn malformed_frames_inside_a_pipeline_get_their_error_in_place() {
    for mode in MODES {
        malformed_frames_get_their_error_in_place(mode);
    }
}

fn malformed_frames_get_their_error_in_place(mode: ConnectionMode) {
    let scheme = SignatureScheme::ECDSA_NISTP256_SHA256;
    let ks = start_in(SiteKey::EcdsaP256, KeyServerOptions::default(), mode);
    let spki = spki(&ks.certs);
    let mut s = connect(&ks);
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for i in 0..16 {
        match i {
            // A truncated SIGN body: EPROTO.
            4 => {
                wire.extend(Frame::new(op::SIGN, vec![0, 0, 0, 9, b's']).encode());
                expect.push(Status::EPROTO);
            }
            // An unknown opcode: ENOSYS.
            7 => {
                wire.extend(Frame::new(99, Vec::new()).encode());
                expect.push(Status::ENOSYS);
            }
            // A body over the key server's limit (4096): E2BIG, the body is
            // skipped and the frames after it are still read.
            10 => {
                wire.extend(
                    Header {
                        code: op::SIGN,
                        len: 5000,
                    }
                    .encode(),
                );
                wire.extend(vec![0xee; 5000]);
                expect.push(Status::E2BIG);
            }
            _ => {
                wire.extend(sign_frame(i, scheme));
                expect.push(Status::OK);
            }
        }
    }
    s.write_all(&wire).unwrap();
    s.flush().unwrap();
    for (i, want) in expect.iter().enumerate() {
        let f = read_frame_sync(&mut s, 1 << 16)
            .unwrap()
            .expect("a reply per frame");
        assert_eq!(f.status(), *want, "{mode}: frame {i}");
        if *want == Status::OK {
            let sig = op::sign::decode_reply(&f.body).unwrap();
            assert!(verify(&spki, scheme, &message(i), &sig), "reply {i} out of order");
        }
    }
    // The connection is still usable afterwards.
    s.write_all(&sign_frame(99, scheme)).unwrap();
    let f = read_frame_sync(&mut s, 1 << 16).unwrap().unwrap();
    assert_eq!(f.status(), Status::OK);
}
