//! Hostile peers: lying lengths, nesting bombs, endless lines. Each case must give its
//! typed error at once (not `Partial`, not a panic), and none may allocate: a counting
//! allocator watches every decode.

use ferry::proto::resp::{decode, Decoder, Limits, RespError};

use crate::alloc_count::allocations;

fn nesting_bomb(levels: usize) -> Vec<u8> {
    b"*1\r\n".repeat(levels)
}

#[test]
fn hostile_table() {
    let huge_line = {
        let mut line = vec![b'+'];
        line.extend(std::iter::repeat_n(b'a', 1 << 20));
        line
    };
    let cases: Vec<(&str, Vec<u8>, RespError)> = vec![
        (
            "bulk 2^40",
            b"$1099511627776\r\n".to_vec(),
            RespError::BulkTooLong,
        ),
        (
            "bulk u64::MAX+1",
            b"$18446744073709551616\r\n".to_vec(),
            RespError::IntegerOverflow,
        ),
        ("bulk -5", b"$-5\r\n".to_vec(), RespError::NegativeLength),
        ("array -2", b"*-2\r\n".to_vec(), RespError::NegativeLength),
        (
            "array 2^31",
            b"*2147483648\r\n".to_vec(),
            RespError::TooManyElements,
        ),
        (
            "map 2^62 pairs",
            b"%4611686018427387904\r\n".to_vec(),
            RespError::TooManyElements,
        ),
        (
            "set above limit",
            b"~16777217\r\n".to_vec(),
            RespError::TooManyElements,
        ),
        (
            "nesting bomb 100k",
            nesting_bomb(100_000),
            RespError::TooDeep,
        ),
        ("1 MB line without CRLF", huge_line, RespError::LineTooLong),
        (
            "endless integer",
            b":1111111111111111111111111111111111111".to_vec(),
            RespError::LineTooLong,
        ),
        (
            "endless header",
            b"$000000000000000000000000000000000000".to_vec(),
            RespError::LineTooLong,
        ),
        (
            "bad type byte",
            b"@5\r\n".to_vec(),
            RespError::UnknownType(b'@'),
        ),
        (
            "bulk not ending in CRLF",
            b"$3\r\nabcXY".to_vec(),
            RespError::BadBulkEnd,
        ),
        (
            "bulk length lies short",
            b"$1\r\nabc\r\n".to_vec(),
            RespError::BadBulkEnd,
        ),
        (
            "integer overflow",
            b":99999999999999999999\r\n".to_vec(),
            RespError::IntegerOverflow,
        ),
        (
            "double not a number",
            b",abc\r\n".to_vec(),
            RespError::BadDouble,
        ),
        (
            "verbatim without colon",
            b"=7\r\ntxtabcd\r\n".to_vec(),
            RespError::BadVerbatim,
        ),
        ("boolean x", b"#x\r\n".to_vec(), RespError::BadBoolean),
        ("CR without LF", b"+OK\rX".to_vec(), RespError::BadLineEnd),
        (
            "streamed string",
            b"$?\r\n".to_vec(),
            RespError::StreamedNotSupported,
        ),
        (
            "nested attribute",
            b"*1\r\n|1\r\n".to_vec(),
            RespError::NestedAttribute,
        ),
        (
            "bad element deep inside",
            b"*2\r\n*1\r\n:1\r\n:x\r\n".to_vec(),
            RespError::BadInteger,
        ),
    ];
    assert!(cases.len() >= 12);
    let limits = Limits::default();
    for (name, bytes, expected) in &cases {
        let before = allocations();
        let one_shot = decode(bytes, &limits);
        let mut decoder = Decoder::new(limits);
        let resumed = decoder.decode(bytes);
        let allocated = allocations() - before;
        assert_eq!(one_shot, Err(*expected), "{name}");
        assert_eq!(resumed, Err(*expected), "{name}");
        assert_eq!(allocated, 0, "{name} allocated");
    }
}

#[test]
fn huge_bulk_fails_on_its_header_alone() {
    // The header is enough: no payload byte is awaited for a length above the limit.
    let before = allocations();
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.decode(b"$1099511627776\r\n"),
        Err(RespError::BulkTooLong)
    );
    assert_eq!(allocations() - before, 0);
}

#[test]
fn nesting_bomb_stops_at_max_depth() {
    let limits = Limits {
        max_depth: 5,
        ..Limits::default()
    };
    // Depth 5 is fine, depth 6 is not; the error comes as soon as its header is read.
    let mut ok = nesting_bomb(4);
    ok.extend_from_slice(b"*0\r\n");
    assert!(decode(&ok, &limits).is_ok());
    let bomb = nesting_bomb(6);
    assert_eq!(decode(&bomb, &limits), Err(RespError::TooDeep));
    assert_eq!(decode(&bomb[..24], &limits), Err(RespError::TooDeep));
}

#[test]
fn long_line_in_tiny_reads_is_scanned_once_and_capped() {
    let limits = Limits {
        max_line_len: 1000,
        ..Limits::default()
    };
    let mut decoder = Decoder::new(limits);
    let line = [b'+']
        .into_iter()
        .chain(std::iter::repeat_n(b'x', 2000))
        .collect::<Vec<_>>();
    let mut result = Ok(ferry::proto::Status::Partial);
    for end in 1..=line.len() {
        result = decoder.decode(&line[..end]);
        if result.is_err() {
            assert_eq!(end, 1002, "error as soon as the cap is passed");
            break;
        }
    }
    assert_eq!(result, Err(RespError::LineTooLong));
}
