//! The layers an int8 model keeps in float (`--keep-float stem,head,stage1`): a user
//! whose checkpoint loses accuracy in int8 trades some speed for it, layer by layer.
//!
//! A kept layer runs exactly as it would in a bf16 model: its GEMM weights are bf16
//! panels (bf16 kernels exist on every ISA level), the stem convs over at most
//! [`crate::F32_CONV_MAX_CIN`] channels hold bf16-rounded weights widened to f32 (the
//! attention cores of an int8 model run the bf16 attention kernel anyway, kept or not:
//! `build::attention_precision`). So an int8 model keeping every layer computes the
//! bits of the bf16 model (tested), and the kept set is fully described by the weights
//! an int8 file stores in bf16.

use crate::{Dims, GraphError};

/// A set of layer selectors. Empty (the default): every layer the int8 scheme
/// quantizes is int8.
///
/// Selectors, comma separated:
/// - `stem` (the four stem convs), `head`, `stageS` (stage `S`, counted from 0 as in
///   the taps and the profile, its downsample included), `all`;
/// - or any dotted prefix of a layer name (`stem.1`, `stages.2.downsample`,
///   `stages.1.blocks.0.mlp.fc1`): a layer is `{prefix}` of its `{prefix}.weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepFloat {
    /// Dotted prefixes (`stageS` already spelled `stages.S`; `all` is the empty one).
    prefixes: Vec<String>,
    /// The selectors as given, for messages.
    given: Vec<String>,
}

impl KeepFloat {
    /// Keeps nothing in float.
    pub fn none() -> KeepFloat {
        KeepFloat::default()
    }

    /// Parses a comma separated list (spaces around names are ignored, empty
    /// entries are an error). Whether each selector names a layer of a model is
    /// checked by [`KeepFloat::check`].
    pub fn parse(list: &str) -> Result<KeepFloat, GraphError> {
        let mut keep = KeepFloat::default();
        for name in list.split(',').map(str::trim) {
            keep.push(name)?;
        }
        Ok(keep)
    }

    /// Adds one selector.
    pub fn push(&mut self, name: &str) -> Result<(), GraphError> {
        let bad = |why: String| GraphError::unsupported("keep_float", why);
        if name.is_empty() {
            return Err(bad("empty layer name in the list".into()));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            return Err(bad(format!(
                "`{name}` is not a layer name (stem, head, stage0, stage1, ..., all, or a \
                 dotted prefix such as stages.1.blocks.0.mlp.fc1)"
            )));
        }
        let prefix = match name {
            "all" => String::new(),
            _ => match name.strip_prefix("stage").map(str::parse::<usize>) {
                Some(Ok(s)) => format!("stages.{s}"),
                _ => name.to_string(),
            },
        };
        if !self.prefixes.contains(&prefix) {
            self.prefixes.push(prefix);
            self.given.push(name.to_string());
        }
        Ok(())
    }

    /// Whether no layer is kept.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The selectors as given.
    pub fn names(&self) -> &[String] {
        &self.given
    }

    /// Whether `layer` (a weight name without `.weight`) is kept in float.
    pub fn keeps(&self, layer: &str) -> bool {
        self.prefixes.iter().any(|p| {
            p.is_empty()
                || layer == p
                || (layer.starts_with(p.as_str()) && layer.as_bytes().get(p.len()) == Some(&b'.'))
        })
    }

    /// An error naming the first selector that matches no layer of `dims` (a typo
    /// must not silently keep nothing).
    pub fn check(&self, dims: &Dims) -> Result<(), GraphError> {
        let layers: Vec<String> = crate::tensor_specs(dims, levit_kernels::Precision::F32)
            .into_iter()
            .filter_map(|s| s.name.strip_suffix(".weight").map(str::to_string))
            .collect();
        for (prefix, name) in self.prefixes.iter().zip(&self.given) {
            let one = KeepFloat {
                prefixes: vec![prefix.clone()],
                given: vec![],
            };
            if !layers.iter().any(|l| one.keeps(l)) {
                return Err(GraphError::unsupported(
                    "keep_float",
                    format!(
                        "`{name}` names no layer of this model (stem, head, stage0..stage{}, \
                         all, or a prefix of a weight name such as {})",
                        dims.stages.len().saturating_sub(1),
                        layers.get(layers.len() / 2).map_or("head", |l| l.as_str())
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for KeepFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.given.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_whole_name_components() {
        let keep = KeepFloat::parse("stem, head,stage1,stages.2.blocks.0.mlp").unwrap();
        for yes in [
            "stem.0",
            "stem.3",
            "head",
            "stages.1.downsample.attn.kv",
            "stages.1.blocks.2.attn",
            "stages.2.blocks.0.mlp.fc1",
        ] {
            assert!(keep.keeps(yes), "{yes}");
        }
        for no in [
            "stages.0.blocks.0.attn.qkv",
            "stages.10.blocks.0.attn.qkv",
            "stages.2.blocks.0.attn.qkv",
            "stages.2.blocks.0.mlpx.fc1",
            "header",
        ] {
            assert!(!keep.keeps(no), "{no}");
        }
        assert!(KeepFloat::parse("all")
            .unwrap()
            .keeps("stages.3.blocks.1.mlp.fc2"));
        assert!(KeepFloat::none().is_empty() && !KeepFloat::none().keeps("head"));
        assert_eq!(keep.to_string(), "stem,head,stage1,stages.2.blocks.0.mlp");
        assert!(KeepFloat::parse("stem,,head").is_err());
        assert!(KeepFloat::parse("stem;head").is_err());
    }
}
