//! The 1000 ImageNet-1k class names, and the top-k classes of a model's logits.
//!
//! `imagenet_classes.tsv` holds `synset<TAB>description` per class in index order,
//! made from timm's `timm/data/_info/imagenet_synsets.txt` and
//! `imagenet_synset_to_lemma.txt` (the names `timm.data.ImageNetInfo()
//! .index_to_description(i)` returns), so class `i` here is class `i` of every timm and
//! facebookresearch ImageNet-1k checkpoint.
//!
//! ```
//! assert_eq!(levit::imagenet::name(281), Some("tabby, tabby cat"));
//!
//! let mut logits = vec![0.0f32; 1000];
//! logits[281] = 12.0;
//! let top = levit::imagenet::top_k(&logits, 3)?;
//! assert_eq!(top[0].class, 281);
//! assert_eq!(top[0].label(), "tabby, tabby cat");
//! assert!(top[0].probability > 0.9);
//! # Ok::<(), levit::Error>(())
//! ```

use std::sync::OnceLock;

use crate::{Error, Result};

const TSV: &str = include_str!("imagenet_classes.tsv");

/// Number of ImageNet-1k classes.
pub const NUM_CLASSES: usize = 1000;

/// `(synset, description)` per class, parsed once.
fn table() -> &'static [(&'static str, &'static str)] {
    static TABLE: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        TSV.lines()
            .map(|line| line.split_once('\t').expect("synset<TAB>description"))
            .collect()
    })
}

/// The description of ImageNet-1k class `class`, e.g. `"tabby, tabby cat"` for 281
/// (`None` past 999).
pub fn name(class: usize) -> Option<&'static str> {
    table().get(class).map(|&(_, name)| name)
}

/// The WordNet synset id of ImageNet-1k class `class`, e.g. `"n02123045"` for 281.
pub fn synset(class: usize) -> Option<&'static str> {
    table().get(class).map(|&(synset, _)| synset)
}

/// One class of a model's output and its softmax probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Class index into the logits.
    pub class: usize,
    /// Softmax probability over all the logits, in [0, 1].
    pub probability: f32,
    /// The raw logit.
    pub logit: f32,
    /// The ImageNet-1k description, when the logits have exactly 1000 classes (`None`
    /// for a model with another head: its class names are not known here).
    pub name: Option<&'static str>,
}

impl Prediction {
    /// The name to show: the ImageNet description, or `class N` for other heads.
    pub fn label(&self) -> String {
        match self.name {
            Some(name) => name.to_string(),
            None => format!("class {}", self.class),
        }
    }

    /// The WordNet synset id, for 1000-class models.
    pub fn synset(&self) -> Option<&'static str> {
        self.name.and(synset(self.class))
    }
}

/// Softmax over `logits`, then the `k` most probable classes, best first (ties: lower
/// class first); fewer than `k` when there are fewer classes. Names are filled in when
/// there are exactly 1000 logits (ImageNet-1k).
///
/// A NaN or infinite logit is an error ([`Error::NonFiniteLogits`]): it means damaged
/// weights or input, and a ranking of it would be silent garbage.
pub fn top_k(logits: &[f32], k: usize) -> Result<Vec<Prediction>> {
    if let Some(class) = logits.iter().position(|l| !l.is_finite()) {
        return Err(Error::NonFiniteLogits {
            class,
            value: logits[class],
        });
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // In f64, after subtracting the max: no overflow, and the sum of 1000 terms keeps
    // the probabilities to f32 precision.
    let sum: f64 = logits
        .iter()
        .map(|&l| (f64::from(l) - f64::from(max)).exp())
        .sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let by_rank = |&a: &usize, &b: &usize| logits[b].total_cmp(&logits[a]).then(a.cmp(&b));
    let k = k.min(logits.len());
    if k < order.len() && k > 0 {
        order.select_nth_unstable_by(k - 1, by_rank);
    }
    order.truncate(k);
    order.sort_unstable_by(by_rank);
    let imagenet = logits.len() == NUM_CLASSES;
    Ok(order
        .into_iter()
        .map(|class| Prediction {
            class,
            probability: ((f64::from(logits[class]) - f64::from(max)).exp() / sum) as f32,
            logit: logits[class],
            name: if imagenet { name(class) } else { None },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_1000_classes_in_timm_order() {
        assert_eq!(table().len(), NUM_CLASSES);
        assert_eq!(TSV.lines().count(), NUM_CLASSES);
        assert_eq!(synset(0), Some("n01440764"));
        assert_eq!(name(0), Some("tench, Tinca tinca"));
        assert_eq!(name(281), Some("tabby, tabby cat"));
        assert_eq!(name(504), Some("coffee mug"));
        assert_eq!(
            name(999),
            Some("toilet tissue, toilet paper, bathroom tissue")
        );
        assert_eq!(synset(999), Some("n15075141"));
        assert_eq!(name(1000), None);
    }

    #[test]
    fn top_k_is_a_sorted_softmax() {
        let top = top_k(&[1.0, 3.0, 2.0, 3.0], 3).unwrap();
        let classes: Vec<usize> = top.iter().map(|p| p.class).collect();
        assert_eq!(classes, [1, 3, 2]);
        let z = 1f64.exp() + 2.0 * 3f64.exp() + 2f64.exp();
        assert!((top[0].probability as f64 - 3f64.exp() / z).abs() < 1e-7);
        assert_eq!(top[2].logit, 2.0);
        // Not ImageNet-sized: no names.
        assert_eq!(top[0].name, None);
        assert_eq!(top[0].label(), "class 1");
        assert_eq!(top[0].synset(), None);
        assert_eq!(top_k(&[0.0; 3], 10).unwrap().len(), 3);
        assert!(top_k(&[0.0; 3], 0).unwrap().is_empty());
        assert!(top_k(&[], 5).unwrap().is_empty());
        let all: f32 = top_k(&[5.0, -1.0, 0.5], 3)
            .unwrap()
            .iter()
            .map(|p| p.probability)
            .sum();
        assert!((all - 1.0).abs() < 1e-6);
    }

    #[test]
    fn top_k_agrees_with_a_full_sort_on_1000_classes() {
        // A deterministic spread of logits with ties.
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 613) as f32 * 0.01)
            .collect();
        let mut full: Vec<usize> = (0..1000).collect();
        full.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        for k in [1, 5, 17, 999, 1000] {
            let top = top_k(&logits, k).unwrap();
            let got: Vec<usize> = top.iter().map(|p| p.class).collect();
            assert_eq!(got, full[..k], "k={k}");
            assert_eq!(top[0].name, name(top[0].class));
            assert_eq!(top[0].synset(), synset(top[0].class));
        }
        // Huge logits do not overflow the softmax.
        let top = top_k(&[1e30, 0.0, -1e30], 3).unwrap();
        assert_eq!(top[0].probability, 1.0);
        assert_eq!(top[2].probability, 0.0);
    }

    #[test]
    fn non_finite_logits_are_an_error() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = top_k(&[0.0, bad, 1.0], 2).unwrap_err();
            assert!(
                matches!(err, Error::NonFiniteLogits { class: 1, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("class 1"), "{err}");
        }
    }
}
