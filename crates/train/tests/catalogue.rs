//! Every catalogue entry is meant for a pipeline and names each column role that pipeline reads.

use seqlab_data::catalogue;
use seqlab_train::{CaptionPipeline, ClassifyPipeline, LmPipeline, Pipeline, TranslatePipeline};

/// The roles of the pipeline whose command is `command`.
fn roles(command: &str) -> Option<&'static [&'static str]> {
    fn of<P: Pipeline>(command: &str) -> Option<&'static [&'static str]> {
        (P::TASK == command).then_some(P::ROLES)
    }
    of::<LmPipeline>(command)
        .or_else(|| of::<ClassifyPipeline>(command))
        .or_else(|| of::<TranslatePipeline>(command))
        .or_else(|| of::<CaptionPipeline>(command))
}

#[test]
fn catalogue_entries_name_the_columns_of_their_pipeline() {
    assert!(!catalogue().is_empty());
    for entry in catalogue() {
        let Some(roles) = roles(entry.command) else {
            panic!(
                "{}: no pipeline has the command {}",
                entry.name, entry.command
            );
        };
        let columns = entry.column_map();
        for role in roles {
            assert!(
                columns.get(role).is_some(),
                "{} ({}) names no {role} column",
                entry.name,
                entry.command
            );
        }
    }
}
