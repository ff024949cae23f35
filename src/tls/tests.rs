//! Key derivation and record protection against published vectors (RFC 8448, the TLS 1.2 PRF
//! vector of the IETF TLS list), and the key log parser.

use super::crypto::{self, HashAlg, RecordKey, Secret};
use super::keylog::KeyStore;

pub(super) fn h(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// RFC 8448 section 3, "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256).
pub(super) const CLIENT_RANDOM: &str = "cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7";
pub(super) const C_HS_TRAFFIC: &str = "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21";
pub(super) const S_HS_TRAFFIC: &str = "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38";
pub(super) const C_AP_TRAFFIC: &str = "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5";
pub(super) const S_AP_TRAFFIC: &str = "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43";

pub(super) const CLIENT_HELLO: &str =
    "01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2
    1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7 00 00 06 13 01 13 03 13 02 01
    00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01 00 01 00 00
    0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00
    23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d 8e
    43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00
    03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06
    04 01 05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c
    00 02 40 01";
pub(super) const SERVER_HELLO_RECORD: &str =
    "16 03 03 00 5a 02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c
    d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e d3 e2 69 28 00 13 01 00 00
    2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72
    e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04";
/// The server's encrypted flight: EncryptedExtensions, Certificate, CertificateVerify, Finished.
pub(super) const SERVER_FLIGHT_RECORD: &str =
    "17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f
    45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca
    07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd
    05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b
    d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e
    f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c
    7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8
    bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92
    8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70
    a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8
    94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea
    52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f
    44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89
    f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3
    6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1
    00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e
    1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84
    c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c
    f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f
    c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be
    5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6
    fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb
    56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10
    dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38
    eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f
    60 f0 50 4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78
    40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3
    79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e
    75 0e dc 53 37 0d 2b";
pub(super) const CLIENT_FINISHED_RECORD: &str =
    "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0
    51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c
    ae ac ab 68 67 d7 26 c4 05 46";
pub(super) const NEW_SESSION_TICKET_RECORD: &str =
    "17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24
    0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a
    01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1
    70 ad 3c 73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0
    9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13 06 46 15
    13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77
    f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3
    47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12 1c 74
    bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b
    3b 6c 67 79 b3 7b f1 59 85 68 4f";
pub(super) const CLIENT_APP_RECORD: &str =
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea
    42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b
    62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4";
pub(super) const SERVER_APP_RECORD: &str =
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc
    32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8
    fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d";
pub(super) const CLIENT_ALERT_RECORD: &str =
    "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";
pub(super) const SERVER_ALERT_RECORD: &str =
    "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9";

/// RFC 8448's EncryptedExtensions and the server Finished, the first and last messages of the
/// server's encrypted flight.
const ENCRYPTED_EXTENSIONS: &str =
    "08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01
    01 01 02 01 03 01 04 00 1c 00 02 40 01 00 00 00 00";
const SERVER_FINISHED: &str = "14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c
    30 95 72 cb 7f ff ee 54 54 b7 8f 07 18";

fn secret(hex: &str) -> Secret {
    Secret::new(&h(hex)).unwrap()
}

fn aes128() -> crypto::Suite {
    crypto::suite(0x1301).unwrap()
}

#[test]
fn rfc8448_traffic_keys_and_ivs() {
    let cases = [
        (
            S_HS_TRAFFIC,
            "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc",
            "5d 31 3e b2 67 12 76 ee 13 00 0b 30",
        ),
        (
            C_HS_TRAFFIC,
            "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01",
            "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f",
        ),
        (
            S_AP_TRAFFIC,
            "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
            "cf 78 2b 88 dd 83 54 9a ad f1 e9 84",
        ),
        (
            C_AP_TRAFFIC,
            "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51",
            "5b 78 92 3d ee 08 57 90 33 e5 23 d9",
        ),
    ];
    for (traffic, key, iv) in cases {
        let (k, i) = crypto::traffic_key_iv(aes128(), &secret(traffic)).unwrap();
        assert_eq!(&k[..16], &h(key)[..], "key from {traffic}");
        assert_eq!(&i[..], &h(iv)[..], "iv from {traffic}");
    }
}

fn open(secret_hex: &str, seq: u64, record_hex: &str) -> Option<(u8, Vec<u8>)> {
    let key = RecordKey::tls13(aes128(), &secret(secret_hex)).unwrap();
    let mut rec = h(record_hex);
    let (head, body) = rec.split_at_mut(5);
    let header: [u8; 5] = head.try_into().unwrap();
    let o = key.open(seq, header, body)?;
    Some((o.content_type, body[o.start..o.end].to_vec()))
}

#[test]
fn rfc8448_server_flight_decrypts() {
    let (typ, plain) = open(S_HS_TRAFFIC, 0, SERVER_FLIGHT_RECORD).unwrap();
    assert_eq!(typ, 22);
    let ee = h(ENCRYPTED_EXTENSIONS);
    let fin = h(SERVER_FINISHED);
    assert!(plain.starts_with(&ee));
    assert!(plain.ends_with(&fin));
    // EE 40 + Certificate 445 + CertificateVerify 136 + Finished 36 octets (RFC 8448's counts).
    assert_eq!(plain.len(), 40 + 445 + 136 + 36);
    // The wrong sequence number or key fails the tag.
    assert!(open(S_HS_TRAFFIC, 1, SERVER_FLIGHT_RECORD).is_none());
    assert!(open(C_HS_TRAFFIC, 0, SERVER_FLIGHT_RECORD).is_none());
}

#[test]
fn rfc8448_application_records_decrypt() {
    let payload: Vec<u8> = (0u8..50).collect();
    assert_eq!(
        open(C_AP_TRAFFIC, 0, CLIENT_APP_RECORD),
        Some((23, payload.clone()))
    );
    // The server's application record follows its NewSessionTicket (seq 0).
    let (typ, nst) = open(S_AP_TRAFFIC, 0, NEW_SESSION_TICKET_RECORD).unwrap();
    assert_eq!((typ, nst[0]), (22, 4));
    assert_eq!(
        open(S_AP_TRAFFIC, 1, SERVER_APP_RECORD),
        Some((23, payload))
    );
    assert_eq!(
        open(C_AP_TRAFFIC, 1, CLIENT_ALERT_RECORD),
        Some((21, vec![1, 0]))
    );
    assert_eq!(
        open(S_AP_TRAFFIC, 2, SERVER_ALERT_RECORD),
        Some((21, vec![1, 0]))
    );
    assert_eq!(
        open(C_HS_TRAFFIC, 0, CLIENT_FINISHED_RECORD).map(|p| p.1[0]),
        Some(20)
    );
}

#[test]
fn tls12_prf_sha256_vector() {
    let mut out = [0u8; 100];
    crypto::prf(
        HashAlg::Sha256,
        &h("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
        b"test label",
        &h("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"),
        &mut out,
    );
    let want = h("e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
        6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
        4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
        87 34 7b 66");
    assert_eq!(&out[..], &want[..]);
}

fn roundtrip(suite_id: u16, etm: bool) {
    let suite = crypto::suite(suite_id).unwrap();
    let master = Secret::new(&[7u8; 48]).unwrap();
    let traffic = Secret::new(&vec![9u8; suite.hash.len()]).unwrap();
    let (cr, sr) = ([1u8; 32], [2u8; 32]);
    let key = || {
        if suite.tls13 {
            RecordKey::tls13(suite, &traffic).unwrap()
        } else {
            RecordKey::tls12(suite, &master, &cr, &sr, true, etm).unwrap()
        }
    };
    let plain = b"GET /chat HTTP/1.1\r\n\r\n";
    let rec = key().seal(5, 23, plain, 3);
    let mut r = rec.clone();
    let (head, body) = r.split_at_mut(5);
    let o = key().open(5, head.try_into().unwrap(), body).unwrap();
    assert_eq!((o.content_type, &body[o.start..o.end]), (23, &plain[..]));
    for bit in [0usize, 7 * 8 + 3, (rec.len() - 1) * 8] {
        let mut r = rec.clone();
        let at = 5 + bit / 8 % (rec.len() - 5);
        r[at] ^= 1 << (bit % 8);
        let (head, body) = r.split_at_mut(5);
        assert!(
            key().open(5, head.try_into().unwrap(), body).is_none(),
            "suite {suite_id:04x} bit {bit}"
        );
    }
    // Another sequence number, another side's key: the tag fails too.
    let mut r = rec.clone();
    let (head, body) = r.split_at_mut(5);
    assert!(key().open(6, head.try_into().unwrap(), body).is_none());
    if !suite.tls13 {
        let server = RecordKey::tls12(suite, &master, &cr, &sr, false, etm).unwrap();
        let mut r = rec.clone();
        let (head, body) = r.split_at_mut(5);
        assert!(server.open(5, head.try_into().unwrap(), body).is_none());
    }
}

#[test]
fn record_roundtrip_and_flipped_bits_every_suite() {
    for id in [
        0x1301, 0x1302, 0x1303, 0xC02F, 0xC030, 0xCCA8, 0x009C, 0xC02C,
    ] {
        roundtrip(id, false);
    }
    for id in [0x002F, 0xC014, 0x003C, 0xC028] {
        roundtrip(id, false);
        roundtrip(id, true);
    }
}

#[test]
fn key_update_secret() {
    // RFC 8446 7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd",
    // "", Hash.length); the HkdfLabel spelled out by hand: length 32, "tls13 traffic upd", no context.
    let s = secret(S_AP_TRAFFIC);
    let next = crypto::next_traffic_secret(HashAlg::Sha256, &s).unwrap();
    let mut info = vec![0x00, 0x20, 17];
    info.extend_from_slice(b"tls13 traffic upd");
    info.push(0);
    let mut want = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::from_prk(s.as_bytes())
        .unwrap()
        .expand(&info, &mut want)
        .unwrap();
    assert_eq!(next.as_bytes(), &want[..]);
    assert_ne!(next, s);
}

#[test]
fn keylog_lines_comments_crlf_and_split_lines() {
    let ks = KeyStore::new();
    let random = "cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7";
    let text = format!(
        "# a comment\r\n\r\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {random} {}\r\nUNKNOWN_LABEL {random} 00\n\
         EXPORTER_SECRET {random} {}\nCLIENT_RANDOM {random} {}\nCLIENT_RANDOM nothex 00\n",
        "ab".repeat(32),
        "cd".repeat(32),
        "ef".repeat(48)
    );
    let (a, b) = text.split_at(60);
    let c1 = ks.add(a.as_bytes());
    let c2 = ks.add(b.as_bytes());
    assert_eq!(c1.secrets + c2.secrets, 2);
    assert_eq!(c1.skipped_lines + c2.skipped_lines, 2);
    assert_eq!(ks.len(), 1);
    let s = ks.lookup(h(random).as_slice().try_into().unwrap()).unwrap();
    assert_eq!(s.client_hs.unwrap().as_bytes(), &[0xab; 32][..]);
    assert_eq!(s.master.unwrap().as_bytes(), &[0xef; 48][..]);
    assert!(s.server_hs.is_none());
    // Debug shows counts, never a secret.
    let dbg = format!("{ks:?} {s:?}");
    assert!(
        !dbg.contains("ab") && !dbg.contains("ef") && !dbg.contains("171"),
        "{dbg}"
    );
}

#[test]
fn keylog_follow_reads_appended_lines() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.log");
    let random = "11".repeat(32);
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        "CLIENT_RANDOM {random} {}\nSERVER_TRAFFIC_SECRET_0 {random} ",
        "22".repeat(48)
    )
    .unwrap();
    f.flush().unwrap();
    let ks = KeyStore::new();
    let c = ks.follow(&path).unwrap();
    assert_eq!((c.secrets, c.skipped_lines), (1, 0));
    let g = ks.generation();
    assert!(!ks.refresh());
    assert_eq!(ks.generation(), g);
    writeln!(f, "{}", "33".repeat(32)).unwrap();
    f.flush().unwrap();
    assert!(ks.refresh());
    let s = ks.lookup(&[0x11; 32]).unwrap();
    assert_eq!(s.server_app.unwrap().as_bytes(), &[0x33; 32][..]);
    let missing = dir.path().join("none");
    let err = ks.follow(&missing).unwrap_err().to_string();
    assert!(err.contains("none"), "{err}");
}

#[test]
fn keylog_error_never_shows_line_content() {
    let ks = KeyStore::new();
    let c = ks.add(format!("CLIENT_RANDOM {} {}\n", "00".repeat(32), "4".repeat(95)).as_bytes());
    assert_eq!((c.secrets, c.skipped_lines), (0, 1));
    assert!(ks.is_empty());
}

#[test]
fn shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<KeyStore>();
    send::<super::TlsStream>();
}
