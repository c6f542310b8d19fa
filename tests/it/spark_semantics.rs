//! The Spark-exact mode's reading rules against PySpark 3.5 itself: a few thousand odd lines
//! (quotes, escapes, tabs inside quotes, control characters, invalid UTF-8, lone CRs, blank
//! lines, short and long rows, every shape of price) read by `spark.read.csv` as the original
//! kit configures it, and odd hour and date strings cast by Spark SQL
//! (`bench/spark_semantics.py`). Ours (`rtb_features::spark`) must answer the same on each.

use std::process::Command;

use rtb_features::spark;
use rtb_loggen::rng::Rng;
use serde_json::Value;

use crate::support::repo_root;

const WIDTH: usize = 5;
const LONG_COLUMN: usize = 1;

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn odd_text(rng: &mut Rng, alphabet: &[&str], max_len: u64) -> String {
    (0..rng.below(max_len + 1))
        .map(|_| pick(rng, alphabet))
        .collect()
}

const PRICES: [&str; 24] = [
    "+5",
    "-3",
    "0077",
    "\u{FF17}\u{FF17}",
    " 77",
    "77 ",
    "12.5",
    "99999999999999999999",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "",
    "null",
    "\u{663}",
    "\u{1D7D5}",
    "+",
    "-",
    "0",
    "-0",
    "1e3",
    "0x10",
    "\"42\"",
    "300",
    "\u{966}\u{967}",
];

fn corpus_lines(rng: &mut Rng) -> Vec<u8> {
    let alphabet = [
        "a", "b", "\"", "\"", "\\", " ", "\t", "\u{1}", "\u{0}", "#", "é", "😀", "\u{FF5E}", "null",
    ];
    let invalid: [&[u8]; 10] = [
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\xed\xa0\x80",
        b"\xc0\x80",
        b"\xf0\x9f\x98",
        b"\xf4\x90\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xe0\x80\x80",
        b"\xef\xbf\xbe",
    ];
    let mut out = Vec::new();
    for _ in 0..4000 {
        let mut line: Vec<u8> = Vec::new();
        match rng.below(20) {
            0 => {
                line.extend_from_slice(pick(rng, &["", " ", "\t", " \u{1}\t ", "\u{0}"]).as_bytes())
            }
            1 => line.extend_from_slice(odd_text(rng, &alphabet, 24).as_bytes()),
            _ => {
                let fields = 1 + rng.below(8);
                for f in 0..fields {
                    if f > 0 {
                        line.push(b'\t');
                    }
                    let field = if f == LONG_COLUMN as u64 && rng.chance(0.7) {
                        pick(rng, &PRICES).to_owned()
                    } else {
                        match rng.below(6) {
                            0 => String::new(),
                            1 => "null".to_owned(),
                            2 => format!(
                                "\"{}\"",
                                odd_text(rng, &["a", "\t", " ", "\\\"", "\"\""], 4)
                            ),
                            _ => odd_text(rng, &alphabet, 8),
                        }
                    };
                    line.extend_from_slice(field.as_bytes());
                    if rng.chance(0.03) {
                        line.extend_from_slice(invalid[rng.below(invalid.len() as u64) as usize]);
                    }
                    if rng.chance(0.01) {
                        line.push(b'\r');
                    }
                }
            }
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(if rng.chance(0.1) { b"\r\n" } else { b"\n" });
    }
    // the last line without its newline
    out.extend_from_slice(b"last\t7\t\"open");
    out
}

fn corpus_values(rng: &mut Rng) -> Vec<String> {
    let fixed = [
        " 7",
        "+7",
        "7.",
        "7.9",
        "07",
        "7x",
        "-1",
        "",
        ".",
        "-.",
        "+.5",
        "\u{1} 7",
        "7\u{7f}",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "1e2",
        "\u{663}",
        "7 ",
        "0x7",
        "2013-03-1",
        "2013-3-11",
        "2013-03-11 x",
        "2013-03-11T10",
        "2013",
        "2013-03",
        "2013-",
        "+2013-03-11",
        "-0001-01-01",
        "10000-01-01",
        "9999999-12-31",
        "5881580-07-11",
        "5881580-07-12",
        "-5877641-06-23",
        "-5877641-06-22",
        "2013-02-29",
        "2012-02-29",
        " 2013-03-11 ",
        "2013-03-11x",
        "201-03-11",
        "2013--11",
        "2013-03-",
        "null",
        "2013-00-10",
        "2013-03-00",
        "2013-03-32",
        "2013-04-31",
        "1900-02-29",
        "2000-02-29",
        "2013-03-011",
        "2013-003-11",
        "2013-03-1 ",
        "\u{1}2013-03-11",
        "2013-03-11\t",
        "2013-03-2T",
        "20130311",
        "2013 -03-11",
        "2013-03 -11",
    ];
    let mut values: Vec<String> = fixed.iter().map(|s| (*s).to_owned()).collect();
    let digits = [
        "0", "1", "2", "3", "9", "-", "-", " ", "T", "+", ".", "\u{1}",
    ];
    for _ in 0..1500 {
        values.push(odd_text(rng, &digits, 11));
    }
    // what the original computes from odd timestamps: chars 1-4, 5-6, 7-8 and 9-10
    let ts_alphabet = ["0", "1", "2", "3", "5", "9", " ", "+", ".", "-", "x"];
    for _ in 0..1000 {
        let ts: Vec<char> = format!("2013{}", odd_text(rng, &ts_alphabet, 9))
            .chars()
            .collect();
        let sub = |from: usize, len: usize| -> String { ts.iter().skip(from).take(len).collect() };
        values.push(format!("{}-{}-{}", sub(0, 4), sub(4, 2), sub(6, 2)));
        values.push(sub(8, 2));
    }
    values
}

/// Our reading of the file: Hadoop's lines, Spark's decoding, blank lines skipped, records.
fn our_rows(bytes: &[u8]) -> Vec<(String, Vec<Value>)> {
    let mut rows = Vec::new();
    for chunk in bytes.split(|b| *b == b'\n') {
        for line in spark::physical_lines(chunk) {
            let text = spark::decode(line);
            if spark::is_blank(&text) {
                continue;
            }
            let mut record = Vec::new();
            spark::read_record(&text, WIDTH, &[LONG_COLUMN], &mut record);
            rows.push((
                text.clone().into_owned(),
                record
                    .iter()
                    .enumerate()
                    .map(|(i, f)| match f {
                        None => Value::Null,
                        Some(v) if i == LONG_COLUMN => {
                            Value::from(v.parse::<i64>().expect("a parsed long"))
                        }
                        Some(v) => Value::from(v.as_ref()),
                    })
                    .collect(),
            ));
        }
    }
    rows
}

#[test]
fn odd_lines_and_casts_read_as_pyspark_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(20_130_311);
    let lines = corpus_lines(&mut rng);
    let values = corpus_values(&mut rng);
    std::fs::write(dir.path().join("lines.tsv"), &lines).expect("write lines");
    std::fs::write(
        dir.path().join("values.json"),
        serde_json::to_vec(&values).expect("json"),
    )
    .expect("write values");
    let script = repo_root().join("bench/spark_semantics.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "{} failed: PySpark 3.5 and Java 17 are needed (scripts/setup.sh installs them)",
        script.display()
    );
    let spark: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("spark.json")).expect("answers"))
            .expect("json");

    let theirs = spark["rows"].as_array().expect("rows");
    let ours = our_rows(&lines);
    let differ: Vec<String> = ours
        .iter()
        .zip(theirs)
        .enumerate()
        .filter(|(_, ((_, o), t))| Value::from(o.as_slice()) != **t)
        .take(10)
        .map(|(i, ((line, o), t))| format!("row {i} {line:?}: ours {o:?}, spark {t}"))
        .collect();
    assert!(differ.is_empty(), "rows differ:\n{}", differ.join("\n"));
    assert_eq!(ours.len(), theirs.len(), "row counts (blank lines skipped)");

    let casts = spark["casts"].as_array().expect("casts");
    assert_eq!(casts.len(), values.len());
    let differ: Vec<String> = values
        .iter()
        .zip(casts)
        .filter_map(|(v, t)| {
            let o = Value::from(vec![
                spark::cast_int(v).map_or(Value::Null, Value::from),
                spark::day_of_week(v).map_or(Value::Null, Value::from),
            ]);
            (o != *t).then(|| format!("{v:?}: ours [int, dayofweek] {o}, spark {t}"))
        })
        .take(20)
        .collect();
    assert!(differ.is_empty(), "casts differ:\n{}", differ.join("\n"));
}
