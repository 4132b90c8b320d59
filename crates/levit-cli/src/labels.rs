//! The 1000 ImageNet-1k class names, shipped inside the binary.
//!
//! `imagenet_classes.tsv` holds `synset<TAB>lemmas` per class in index order, made from
//! timm's `timm/data/_info/imagenet_synsets.txt` and `imagenet_synset_to_lemma.txt`
//! (the same names `timm.data.ImageNetInfo().index_to_description(i)` returns).

const TSV: &str = include_str!("imagenet_classes.tsv");

/// Number of ImageNet-1k classes.
pub const IMAGENET_CLASSES: usize = 1000;

/// `(synset, description)` of ImageNet-1k class `index`, e.g.
/// `("n02123045", "tabby, tabby cat")` for 281.
pub fn imagenet(index: usize) -> Option<(&'static str, &'static str)> {
    TSV.lines()
        .nth(index)
        .and_then(|line| line.split_once('\t'))
}

/// The name to show for class `index` of a model with `num_classes` classes: the
/// ImageNet description for 1000-class models, `class N` otherwise.
pub fn class_name(num_classes: usize, index: usize) -> String {
    match (num_classes == IMAGENET_CLASSES)
        .then(|| imagenet(index))
        .flatten()
    {
        Some((_, description)) => description.to_string(),
        None => format!("class {index}"),
    }
}

/// The synset id for class `index` of a 1000-class model.
pub fn synset(num_classes: usize, index: usize) -> Option<&'static str> {
    (num_classes == IMAGENET_CLASSES)
        .then(|| imagenet(index).map(|(s, _)| s))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_1000_classes_in_timm_order() {
        assert_eq!(TSV.lines().count(), IMAGENET_CLASSES);
        assert_eq!(imagenet(0), Some(("n01440764", "tench, Tinca tinca")));
        assert_eq!(imagenet(281), Some(("n02123045", "tabby, tabby cat")));
        assert_eq!(
            imagenet(999),
            Some(("n15075141", "toilet tissue, toilet paper, bathroom tissue"))
        );
        assert_eq!(imagenet(1000), None);
        assert_eq!(class_name(1000, 504), "coffee mug");
        assert_eq!(class_name(10, 3), "class 3");
        assert_eq!(synset(10, 3), None);
    }
}
