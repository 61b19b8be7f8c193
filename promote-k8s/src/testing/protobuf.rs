//! Just enough of the Kubernetes protobuf encoding to read what `kubectl create namespace|configmap|secret`
//! sends: the `k8s\0` envelope (`runtime.Unknown`), TypeMeta, ObjectMeta's names, labels and annotations, and
//! the data of ConfigMaps and Secrets. Other kinds are refused with 415.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf body could not be decoded")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or_else(malformed)?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.buf.len() {
            return Err(malformed());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and value; fixed-width fields are skipped (none of the decoded messages use them).
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ApiError> {
        loop {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let key = self.varint()?;
            let field = key >> 3;
            match key & 7 {
                0 => return Ok(Some((field, Field::Varint(self.varint()?)))),
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| malformed())?;
                    return Ok(Some((field, Field::Bytes(self.take(len)?))));
                }
                1 => {
                    self.take(8)?;
                }
                5 => {
                    self.take(4)?;
                }
                _ => return Err(malformed()),
            }
        }
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut reader = Reader { buf };
    let mut out = Vec::new();
    while let Some(field) = reader.next()? {
        out.push(field);
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

/// A `map<string, string|bytes>` entry: `{1: key, 2: value}`.
fn map_entry(bytes: &[u8]) -> Result<(String, &[u8]), ApiError> {
    let (mut key, mut value): (String, &[u8]) = (String::new(), &[]);
    for (n, f) in fields(bytes)? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = text(b)?,
            (2, Field::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

fn object_meta(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    for (n, f) in fields(bytes)? {
        let Field::Bytes(b) = f else { continue };
        match n {
            1 if !b.is_empty() => {
                meta.insert("name".into(), json!(text(b)?));
            }
            2 if !b.is_empty() => {
                meta.insert("generateName".into(), json!(text(b)?));
            }
            3 if !b.is_empty() => {
                meta.insert("namespace".into(), json!(text(b)?));
            }
            11 => {
                let (k, v) = map_entry(b)?;
                labels.insert(k, json!(text(v)?));
            }
            12 => {
                let (k, v) = map_entry(b)?;
                annotations.insert(k, json!(text(v)?));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(meta))
}

/// Decodes a `k8s\0`-framed protobuf body into the JSON object it encodes.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unknown = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let (mut api_version, mut kind, mut raw): (String, String, &[u8]) = (String::new(), String::new(), &[]);
    for (n, f) in fields(unknown)? {
        match (n, f) {
            (1, Field::Bytes(type_meta)) => {
                for (m, g) in fields(type_meta)? {
                    match (m, g) {
                        (1, Field::Bytes(b)) => api_version = text(b)?,
                        (2, Field::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    let b64 = |b: &[u8]| json!(base64::engine::general_purpose::STANDARD.encode(b));
    let (mut data, mut binary, mut string_data) = (Map::new(), Map::new(), Map::new());
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(b)) => object["metadata"] = object_meta(b)?,
            ("Namespace", _, _) => {}
            ("ConfigMap", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                data.insert(k, json!(text(v)?));
            }
            ("ConfigMap", 3, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                binary.insert(k, b64(v));
            }
            ("ConfigMap", 4, Field::Varint(v)) | ("Secret", 5, Field::Varint(v)) => object["immutable"] = json!(v != 0),
            ("Secret", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                data.insert(k, b64(v));
            }
            ("Secret", 3, Field::Bytes(b)) if !b.is_empty() => object["type"] = json!(text(b)?),
            ("Secret", 4, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                string_data.insert(k, json!(text(v)?));
            }
            ("ConfigMap" | "Secret", _, _) => {}
            _ => return Err(ApiError::unsupported_media_type()),
        }
    }
    for (key, map) in [("data", data), ("binaryData", binary), ("stringData", string_data)] {
        if !map.is_empty() {
            object[key] = Value::Object(map);
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn decodes_kubectl_create_namespace() {
        // Captured from `kubectl create namespace ns1` (kubectl 1.32).
        let body = hex(
            "6b3873000a0f0a02763112094e616d657370616365121b0a130a036e733112001a0022002a0032003800420012001a020a001a002200",
        );
        let object = decode(&body).unwrap();
        assert_eq!(object, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}}));
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\xff").is_err());
    }
}
