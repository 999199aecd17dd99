//! A bounded reader for a GGUF file's header: the key/value section and the tensor table, never the
//! weights. `hearth models show` and `import` read it from files that may come from anywhere, so
//! every count and length is checked against a limit before anything is allocated or skipped, and
//! a file that lies about its sizes is refused with what it claimed.
//!
//! Layout (GGUF v2 and v3, little-endian): magic `GGUF`, version u32, tensor count u64, key/value
//! count u64, then the pairs (key: string, type: u32, value), then per tensor: name, n_dims u32,
//! dims u64 each, type u32, offset u64. A string is a u64 length and that many UTF-8 bytes.
//! Scalar and string values are kept (strings up to [`MAX_KEPT_STRING`]); arrays are skipped and
//! only their length is kept (the tokenizer's vocabulary is an array of 50k-250k strings).

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// More key/value pairs than any real model has (SmolLM2: 38; large MoE models: under 100).
const MAX_KV: u64 = 4096;
/// More tensors than any real model has (a 405B model: about 1,100; MoE models: some 10,000s).
const MAX_TENSORS: u64 = 1 << 20;
/// A key or a tensor name.
const MAX_NAME: u64 = 64 * 1024;
/// Any one string value (a chat template is a few KiB; a 100 MiB string is an attack).
const MAX_STRING: u64 = 16 << 20;
/// String values longer than this are skipped rather than kept.
pub const MAX_KEPT_STRING: u64 = 1 << 20;
/// Elements of one array (a vocabulary of 262k tokens is the largest seen).
const MAX_ARRAY: u64 = 1 << 24;
/// Nested arrays.
const MAX_DEPTH: u32 = 2;

/// What a GGUF header said that is wrong, or why it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0} is not a GGUF file (it does not start with the bytes `GGUF`)")]
    NotGguf(String),
    #[error("{path}: GGUF version {version} is not supported (2 and 3 are)")]
    Version { path: String, version: u32 },
    #[error("{path}: malformed GGUF header: {reason}")]
    Malformed { path: String, reason: String },
}

/// One kept value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// An array: only its element count.
    Array(u64),
    /// A string longer than [`MAX_KEPT_STRING`]: only its length.
    LongStr(u64),
}

/// A GGUF file's header.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// The key/value metadata (`general.architecture`, `llama.context_length`, ...).
    pub metadata: BTreeMap<String, Value>,
    /// Tensors in the file.
    pub tensor_count: u64,
    /// Elements over all tensors: the parameter count of this file (one shard of a split model).
    pub parameters: u64,
}

impl Header {
    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer value, whatever its width and sign.
    pub fn uint(&self, key: &str) -> Option<u64> {
        match self.metadata.get(key) {
            Some(Value::UInt(v)) => Some(*v),
            Some(Value::Int(v)) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// `general.architecture` (`llama`, `bert`, ...).
    pub fn architecture(&self) -> Option<&str> {
        self.str("general.architecture")
    }

    /// `<arch>.context_length`: the context the model was trained for.
    pub fn context_length(&self) -> Option<u64> {
        self.uint(&format!("{}.context_length", self.architecture()?))
    }

    /// The file type (`general.file_type`) as llama.cpp names it (`Q4_K_M`, `F16`).
    pub fn quantization(&self) -> String {
        self.uint("general.file_type").map_or_else(|| "unknown".into(), file_type_name)
    }

    /// Whether a chat template is embedded (`tokenizer.chat_template`).
    pub fn has_chat_template(&self) -> bool {
        matches!(self.metadata.get("tokenizer.chat_template"), Some(Value::Str(_) | Value::LongStr(_)))
    }

    /// `split.count` of a split model (1 when not split).
    pub fn split_count(&self) -> u64 {
        self.uint("split.count").unwrap_or(1).max(1)
    }
}

/// llama.cpp's `llama_ftype` names (include/llama.h).
pub fn file_type_name(ftype: u64) -> String {
    let name = match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        other => return format!("file_type {other}"),
    };
    name.to_owned()
}

/// Read the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<Header, GgufError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| GgufError::Io { path: shown.clone(), source })?;
    let len = file.metadata().map_err(|source| GgufError::Io { path: shown.clone(), source })?.len();
    let mut r = Reader { inner: BufReader::new(file), path: shown, len };
    r.header()
}

/// True when the first four bytes of `path` are `GGUF`.
pub fn looks_like_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF"
}

struct Reader {
    /// Skips within its buffer cost no system call (`seek_relative`): a vocabulary is 50k+ of them.
    inner: BufReader<std::fs::File>,
    path: String,
    /// The file's length: nothing may claim to extend past it.
    len: u64,
}

impl Reader {
    fn header(&mut self) -> Result<Header, GgufError> {
        let mut magic = [0u8; 4];
        self.inner.read_exact(&mut magic).map_err(|_| GgufError::NotGguf(self.path.clone()))?;
        if &magic != b"GGUF" {
            return Err(GgufError::NotGguf(self.path.clone()));
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version { path: self.path.clone(), version });
        }
        let tensor_count = self.u64()?;
        let kv_count = self.u64()?;
        if kv_count > MAX_KV {
            return Err(self.bad(format!("it claims {kv_count} metadata entries (at most {MAX_KV} are read)")));
        }
        if tensor_count > MAX_TENSORS {
            return Err(self.bad(format!("it claims {tensor_count} tensors (at most {MAX_TENSORS} are read)")));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = self.string(MAX_NAME, "a metadata key")?;
            let ty = self.u32()?;
            let value = self.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut parameters = 0u64;
        for _ in 0..tensor_count {
            self.string(MAX_NAME, "a tensor name")?;
            let n_dims = self.u32()?;
            if n_dims > 8 {
                return Err(self.bad(format!("a tensor claims {n_dims} dimensions")));
            }
            let mut elements = 1u64;
            for _ in 0..n_dims {
                elements = elements.saturating_mul(self.u64()?);
            }
            self.u32()?; // type
            self.u64()?; // offset
            parameters = parameters.saturating_add(elements);
        }
        Ok(Header { version, metadata, tensor_count, parameters })
    }

    fn bad(&self, reason: String) -> GgufError {
        GgufError::Malformed { path: self.path.clone(), reason }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| self.bad(format!("it ends inside the header ({e})")))?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn position(&mut self) -> Result<u64, GgufError> {
        self.inner.stream_position().map_err(|e| self.bad(e.to_string()))
    }

    /// Skip `n` bytes that must lie within the file.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufError> {
        let at = self.position()?;
        if at.saturating_add(n) > self.len {
            return Err(self.bad(format!("{what} of {n} bytes would extend past the end of the {}-byte file", self.len)));
        }
        let by = i64::try_from(n).map_err(|_| self.bad(format!("{what} is too long")))?;
        self.inner.seek_relative(by).map_err(|e| self.bad(e.to_string()))?;
        Ok(())
    }

    fn string(&mut self, limit: u64, what: &str) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > limit {
            return Err(self.bad(format!("{what} claims {len} bytes (limit {limit})")));
        }
        if self.position()?.saturating_add(len) > self.len {
            return Err(self.bad(format!("{what} of {len} bytes extends past the end of the file")));
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| self.bad(format!("{what} is too long")))?];
        self.inner.read_exact(&mut buf).map_err(|e| self.bad(e.to_string()))?;
        String::from_utf8(buf).map_err(|_| self.bad(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::UInt(u64::from(self.bytes::<1>()?[0])),
            1 => Value::Int(i64::from(i8::from_le_bytes(self.bytes()?))),
            2 => Value::UInt(u64::from(u16::from_le_bytes(self.bytes()?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => Value::UInt(u64::from(self.u32()?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.bytes()?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.bytes()?))),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => {
                let len = self.u64()?;
                if len > MAX_STRING {
                    return Err(self.bad(format!("a string value claims {len} bytes (limit {MAX_STRING})")));
                }
                if len > MAX_KEPT_STRING {
                    self.skip(len, "a string value")?;
                    Value::LongStr(len)
                } else {
                    // Put the length back for `string` to read.
                    self.inner.seek_relative(-8).map_err(|e| self.bad(e.to_string()))?;
                    Value::Str(self.string(MAX_KEPT_STRING, "a string value")?)
                }
            }
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                if n > MAX_ARRAY {
                    return Err(self.bad(format!("an array claims {n} elements (limit {MAX_ARRAY})")));
                }
                if depth >= MAX_DEPTH {
                    return Err(self.bad("arrays nested too deep".into()));
                }
                match fixed_size(elem) {
                    Some(size) => self.skip(n * size, "an array")?,
                    None => {
                        for _ in 0..n {
                            match elem {
                                8 => {
                                    let len = self.u64()?;
                                    if len > MAX_STRING {
                                        return Err(self.bad(format!("an array string claims {len} bytes")));
                                    }
                                    self.skip(len, "an array string")?;
                                }
                                _ => {
                                    self.value(elem, depth + 1)?;
                                }
                            }
                        }
                    }
                }
                Value::Array(n)
            }
            10 => Value::UInt(self.u64()?),
            11 => Value::Int(i64::from_le_bytes(self.bytes()?)),
            12 => Value::Float(f64::from_le_bytes(self.bytes()?)),
            other => return Err(self.bad(format!("unknown value type {other}"))),
        })
    }
}

/// Bytes of one element of a fixed-size GGUF type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid GGUF v3 file: the given string metadata and one 4x2 F32 tensor.
    pub(crate) fn tiny_gguf(strings: &[(&str, &str)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend((strings.len() as u64 + 1).to_le_bytes());
        let put_str = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        for (k, v) in strings {
            put_str(&mut b, k);
            b.extend(8u32.to_le_bytes());
            put_str(&mut b, v);
        }
        put_str(&mut b, "general.file_type");
        b.extend(4u32.to_le_bytes());
        b.extend(7u32.to_le_bytes());
        put_str(&mut b, "w");
        b.extend(2u32.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend([0u8; 32]);
        b
    }

    fn read_bytes(bytes: &[u8]) -> Result<Header, GgufError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        std::fs::write(&p, bytes).unwrap();
        read(&p)
    }

    #[test]
    fn reads_strings_file_type_and_parameters() {
        let h = read_bytes(&tiny_gguf(&[("general.architecture", "llama"), ("tokenizer.chat_template", "{{x}}")])).unwrap();
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(h.quantization(), "Q8_0");
        assert!(h.has_chat_template());
        assert_eq!(h.parameters, 8);
        assert_eq!(h.split_count(), 1);
    }

    #[test]
    fn reads_the_real_models() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let chat = read(&root.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
        assert_eq!(chat.architecture(), Some("llama"));
        assert_eq!(chat.quantization(), "Q4_1");
        assert_eq!(chat.context_length(), Some(8192));
        assert!(chat.has_chat_template());
        assert!((130_000_000..140_000_000).contains(&chat.parameters), "{}", chat.parameters);
        let embed = read(&root.join("all-MiniLM-L6-v2.f16.gguf")).unwrap();
        assert_eq!(embed.architecture(), Some("bert"));
        assert_eq!(embed.quantization(), "F16");
    }

    #[test]
    fn hostile_headers_are_refused_with_what_they_claimed() {
        assert!(matches!(read_bytes(b"PK\x03\x04rest"), Err(GgufError::NotGguf(_))));
        let mut huge_kv = b"GGUF".to_vec();
        huge_kv.extend(3u32.to_le_bytes());
        huge_kv.extend(0u64.to_le_bytes());
        huge_kv.extend(u64::MAX.to_le_bytes());
        let e = read_bytes(&huge_kv).unwrap_err().to_string();
        assert!(e.contains("metadata entries"), "{e}");
        // A key whose length runs past the end of the file.
        let mut long_key = b"GGUF".to_vec();
        long_key.extend(3u32.to_le_bytes());
        long_key.extend(0u64.to_le_bytes());
        long_key.extend(1u64.to_le_bytes());
        long_key.extend(60_000u64.to_le_bytes());
        let e = read_bytes(&long_key).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
        // Truncated anywhere: an error, never a panic.
        let good = tiny_gguf(&[("general.architecture", "llama")]);
        for cut in 0..good.len() - 32 {
            assert!(read_bytes(&good[..cut]).is_err(), "cut at {cut}");
        }
    }
}
