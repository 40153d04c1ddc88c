"""Every promise in README.md's marked list ("Promises and their tests", between `<!-- promises:start -->`
and `<!-- promises:end -->`) has an entry here naming the tests that prove it, and every test named here
exists (found by file, class and function name in the source, without importing or collecting it: this
stays a fast unit test). A promise no test proves yet is listed in GAPS with why, so the gap is visible.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import defined_tests

ROOT = Path(__file__).resolve().parents[2]

IE, IX, IT, ID, IR = (
    "tests/integration/eval/",
    "tests/integration/export/",
    "tests/integration/train/",
    "tests/integration/data/",
    "tests/integration/recipes/",
)

OP = "tests/integration/test_output_paths.py::"
KA = "tests/integration/test_kill_anywhere.py::"
NR = "tests/integration/test_no_room.py::"

# promise ID (as in the README list) -> node ids of the tests that prove it
PROMISES: dict[str, list[str]] = {
    "eval-exit-codes": [
        IE + "test_eval.py::test_predictions_runner_perfect_transcripts_pass",
        IE + "test_eval.py::test_predictions_without_integration_fail_the_f1_gate",
        IE + "test_eval_scale.py::test_errored_items_make_passing_gates_inconclusive",
        IE + "test_eval.py::test_runner_usage_errors_exit_2",
    ],
    "gates-fail": [
        "tests/unit/eval/score/test_scoring_table.py::test_gate_status",
        "tests/unit/eval/score/test_call_sequence.py::test_parity_below_the_threshold_fails_its_gate",
        "tests/unit/eval/score/test_call_sequence.py::test_call_sequence_of_a_multi_call_item",
        IE + "test_eval.py::test_control_item_with_a_tool_call_is_a_hard_fail",
    ],
    "gamed-answers-fail": [
        "tests/unit/eval/score/test_gamed_answers.py::test_gamed_answer_fails_the_run",
        "tests/unit/eval/score/test_gamed_answers.py::test_gold_answers_pass_every_gate",
        "tests/unit/eval/score/test_scoring_table.py::test_item_precision_recall_f1",
    ],
    "call-matching-rules": [
        "tests/unit/eval/score/test_call_match.py::test_match_call_rule",
        "tests/unit/eval/score/test_call_match.py::test_match_calls_of_an_item",
        "tests/unit/eval/score/test_call_match.py::test_underscore_spelling_only_where_it_names_one_tool",
    ],
    "checkpoints-untrusted": [
        IT + "test_untrusted_run.py::test_a_tampered_run_folder_exits_2_with_one_line_and_changes_nothing",
        IT + "test_untrusted_run.py::test_a_checkpoint_sealed_with_another_key_is_refused",
        IT + "test_untrusted_run.py::test_a_checkpoint_of_another_config_is_refused",
        "tests/unit/train/test_state.py::test_a_pickle_in_place_of_the_state_is_refused_and_never_run",
    ],
    "trainer-schedule": [
        "tests/unit/train/test_schedule.py::test_lr_at",
        "tests/unit/train/test_schedule.py::test_seq_len_at",
        IT + "test_train.py::test_gradient_accumulation_is_one_step_over_the_bigger_batch",
        IT + "test_train.py::test_each_step_follows_the_schedule_and_the_curriculum_under_a_progress_bar",
    ],
    "bad-input-one-line": [
        "tests/integration/test_bad_input.py::test_bad_dataset_line",
        "tests/integration/test_bad_input.py::test_bad_predictions_file",
        "tests/integration/test_bad_input.py::test_missing_input_file_is_a_clear_error",
        IE + "test_sealed_rows.py::test_malformed_shards_name_file_line_and_field",
        IE + "test_gates_cli.py::test_a_bad_gate_config_stops_eval_and_merge_before_any_output",
        "tests/unit/eval/test_gates_config.py::test_a_bad_gate_config_is_one_line_naming_file_line_and_field",
    ],
    "reports-byte-identical": [
        IE + "test_eval_scale.py::test_two_workers_write_the_bytes_of_one",
        IE + "test_eval_scale.py::test_merged_shards_are_the_unsharded_run",
    ],
    "errors-never-pass": [
        IE + "test_eval_scale.py::test_errored_items_make_passing_gates_inconclusive",
        IE + "test_eval_scale.py::test_errors_never_turn_a_failed_gate_into_anything_else",
        IE + "test_runners.py::test_unreachable_endpoint_makes_errors_and_no_gate_passes",
        "tests/unit/eval/test_gates_config.py::test_errors_never_pass_a_run_even_without_a_gate_for_them",
    ],
    "fingerprints": [
        IE + "test_eval.py::test_verification_only_scores_gold_at_one_and_sets_every_fingerprint",
        IE + "test_eval.py::test_a_missing_fingerprint_fails_the_run",
        "tests/integration/tools/test_registry_broker.py::test_registry_fingerprint_is_stable_and_tracks_schema_changes",
        IE + "test_runners.py::test_runner_parity_hf_local_openai_http_coreml",
    ],
    "workers-same-bytes": [
        IE + "test_eval_scale.py::test_two_workers_write_the_bytes_of_one",
        IE + "test_runners.py::test_hf_local_with_two_workers_writes_the_bytes_of_one",
    ],
    "merge-refusals": [
        IE + "test_eval_scale.py::test_merge_refuses_an_incomplete_or_mixed_set",
        IE + "test_eval_scale.py::test_merge_refuses_a_repeated_or_missing_item_and_another_model",
    ],
    "rows-sealed": [
        IE + "test_sealed_rows.py::test_forged_counts_and_a_forged_header_are_refused",
        IE + "test_sealed_rows.py::test_rows_sealed_with_another_key_are_refused",
        IE + "test_sealed_rows.py::test_rows_moved_to_another_position_or_run_are_refused",
        IE + "test_sealed_rows.py::test_shards_of_one_key_merge_to_the_plain_run_and_another_key_is_named",
        IE + "test_sealed_rows.py::test_forged_or_foreign_part_rows_are_refused_on_resume",
    ],
    "resume-exactly-once": [
        IE + "test_eval_scale.py::test_sigkill_then_the_same_command_scores_every_item_once",
        IE + "test_eval_scale.py::test_crash_resume_truncated_line_and_fresh",
        IE
        + "test_http_resume.py::test_a_killed_model_runner_resumes_each_item_once_and_never_writes_the_key",
    ],
    "resume-refuses-other-inputs": [
        IE + "test_eval_scale.py::test_crash_resume_truncated_line_and_fresh",
        IE
        + "test_http_resume.py::test_a_killed_model_runner_resumes_each_item_once_and_never_writes_the_key",
    ],
    "smoke-exit-1": [IE + "test_runners.py::test_smoke_fails_when_runners_disagree"],
    "finish-reasons": [IE + "test_runners.py::test_tool_loop_rules"],
    "verify-problems": [
        "tests/unit/data/test_verify_problems.py::test_each_problem_kind_from_a_crafted_dataset",
        "tests/unit/data/test_verify_problems.py::test_every_kind_verify_can_report_has_a_case",
        ID + "test_contextual.py::test_verify_reports_coverage_and_catches_broken_items",
    ],
    "dataset-deterministic": [
        ID + "test_contextual.py::test_gen_is_byte_identical_per_seed_and_differs_across_seeds"
    ],
    "spans-hold-their-text": [
        ID + "test_contextual.py::test_spans_are_utf8_byte_offsets_and_token_spans_decode"
    ],
    "every-call-has-its-fixture": [ID + "test_contextual.py::test_every_generated_call_has_its_fixture"],
    "sandbox": [
        "tests/unit/tools/test_normalize_props.py::test_normalize_path_never_escapes",
        "tests/integration/tools/test_registry_broker.py::test_record_runs_in_a_copy_of_the_sandbox_and_refuses_escapes",
    ],
    "url-canonical": ["tests/unit/tools/test_normalize_props.py::test_url_equivalents_share_a_key"],
    "key-order": [
        "tests/unit/tools/test_normalize_props.py::test_normalisation_does_not_depend_on_key_order"
    ],
    "kd-cache-and-resume": [
        ID + "test_kd_mix.py::test_hf_teacher_stores_text_and_topk_and_reruns_from_cache",
        ID + "test_kd_mix.py::test_kill_and_resume_loses_and_duplicates_nothing",
    ],
    "kd-retries-and-failures": [
        ID + "test_kd_mix.py::test_http_teacher_retries_each_fault_then_succeeds",
        ID + "test_kd_mix.py::test_http_permanent_failure_is_recorded_not_dropped",
    ],
    "api-key-never-written": [
        ID + "test_kd_mix.py::test_the_api_key_is_sent_and_never_written",
        IE
        + "test_http_resume.py::test_a_killed_model_runner_resumes_each_item_once_and_never_writes_the_key",
        "tests/unit/backends/test_openai_client.py::test_the_api_key_goes_in_the_header_and_nowhere_else",
        ID + "test_http_secrets.py::test_no_file_of_an_http_run_holds_the_key_or_the_url_password",
    ],
    "losses": [
        "tests/unit/train/test_losses.py::test_kl_terms_are_scaled_by_t_squared",
        "tests/unit/train/test_losses.py::test_generalised_jsd_hand_value_and_edges",
        "tests/unit/train/test_losses.py::test_tail_bucket_holds_the_missing_mass",
        "tests/unit/train/test_losses.py::test_process_weights_land_on_the_span_not_the_sequence_start",
    ],
    "train-exact-resume": [KA + "test_train_killed_anywhere"],
    "train-nan-inf-exit-3": [
        IT + "test_train.py::test_an_inf_loss_exits_3_through_the_cli",
        IT + "test_train.py::test_a_nan_loss_exits_3_through_the_cli_and_keeps_a_checkpoint",
        IT + "test_train.py::test_nan_loss_stops_and_keeps_the_last_good_checkpoint",
    ],
    "train-unknown-key-exit-2": [
        IT + "test_train.py::test_a_misspelt_config_key_is_refused_naming_file_key_and_known_keys"
    ],
    "checkpoint-manifest": [
        IT + "test_untrusted_run.py::test_a_tampered_run_folder_exits_2_with_one_line_and_changes_nothing"
    ],
    "ane-matches-hf": [
        IX + "test_export.py::test_logits_match_hf",
        IX + "test_export.py::test_decoder_greedy_equals_full_sequence",
    ],
    "coreml-packages": [
        IX + "test_export.py::test_coreml_packages_per_shape_and_manifest",
        IX + "test_export.py::test_coreml_int8_weights_are_present",
        IX + "test_export.py::test_coreml_stateful_decoder",
    ],
    "corrupt-or-unsupported-named": [
        IX + "test_export.py::test_coreml_corrupt_package_names_the_file",
        IX + "test_export.py::test_unsupported_op_is_named",
    ],
    "onnx-parity": [IX + "test_export.py::test_onnx_parity"],
    "export-parity": [
        IX + "test_export.py::test_export_parity_cli_passes_on_its_own_package",
        IX + "test_export.py::test_export_parity_cli_fails_on_another_checkpoint",
        IX + "test_export.py::test_export_parity_refuses_a_package_without_matching_weights",
        IX + "test_export.py::test_coreml_fp16_and_ane_layout",
    ],
    "mil-executor": [
        IX + "mil/test_ops.py::test_ops_match_coremltools_value_inference",
        IX
        + "mil/test_compressed_weights.py::test_int8_weights_match_torch_with_the_same_dequantized_weights",
        IX + "mil/test_state.py::test_stateful_kv_cache_step_by_step",
    ],
    "coreml-stateful-decoding": [
        IX + "test_kv_decode.py::test_chunked_prefill_and_verify_give_the_full_sequence_package_s_tokens",
        IX + "test_kv_decode.py::test_a_conversation_reuses_its_cache_and_no_other_does",
        IX + "test_kv_decode.py::test_a_dropped_session_only_costs_time",
    ],
    "caws-check": [
        "tests/unit/arbiter/test_oracle.py::test_rule_table",
        "tests/unit/arbiter/test_oracle.py::test_expiry_is_decided_at_check_time",
        "tests/integration/arbiter/test_git_history.py::test_every_commit_of_a_built_history_reads_as_git_counts_it",
        "tests/integration/arbiter/test_git_history.py::test_caws_check_rules_real_commits",
        "tests/integration/arbiter/test_git_history.py::test_caws_check_refuses_bad_input_in_one_line",
    ],
    "judge-set": [
        "tests/unit/arbiter/test_judge_data.py::test_every_label_is_the_oracles",
        "tests/unit/arbiter/test_judge_data.py::test_heldout_shares_no_module_file_name_rationale_or_wording_with_training",
        "tests/unit/arbiter/test_judge_data.py::test_shortcut_baselines_catch_a_leak",
        "tests/integration/arbiter/test_judge_data_cli.py::test_a_gateable_set_passes_its_checks",
        "tests/integration/arbiter/test_judge_data_cli.py::test_a_set_too_small_to_gate_on_exits_1_and_names_the_check",
    ],
    "judge-eval": [
        "tests/unit/arbiter/test_judge_scores.py::test_reading_a_verdict",
        "tests/unit/arbiter/test_judge_scores.py::test_single_case_metrics_by_hand",
        "tests/integration/arbiter/test_judge_pipeline.py::test_judge_eval_reports_what_its_results_say",
    ],
    "judge-coreml": [
        "tests/integration/arbiter/test_judge_pipeline.py::test_the_core_ml_judge_is_gated_and_compared_with_pytorch",
        "tests/unit/arbiter/test_judge_scores.py::test_comparing_two_runs_verdict_by_verdict",
        "tests/integration/export/test_kv_decode.py::test_continuation_logits_are_the_full_sequence_package_s",
    ],
    "toy-e2e-gates": [IR + "test_toy_e2e.py::test_toy_e2e_runs_and_its_gates_hold"],
    "speculative-equals-greedy": [
        IR + "test_toy_e2e.py::test_speculative_greedy_equals_plain_greedy_through_the_package",
        IE + "test_speculative.py::test_greedy_speculative_decoding_is_the_targets_greedy_output",
        IE + "test_speculative.py::test_eval_with_a_drafter_writes_the_bytes_of_a_run_without_it",
    ],
    "speculative-sampling": [
        "tests/unit/eval/test_speculative_rule.py::test_sampled_verification_emits_the_targets_distribution"
    ],
    "heldout-never-in-training": [IR + "test_toy_e2e.py::test_heldout_calls_never_occur_in_training"],
    "layers": ["tests/unit/test_layers.py::test_every_import_goes_down_or_stays_in_its_package"],
    "outputs-checked-first": [
        OP + "test_an_output_that_is_an_input_is_refused_and_the_input_kept",
        OP + "test_a_fifo_is_refused_as_any_output",
        OP + "test_a_character_device_is_never_replaced",
        OP + "test_an_existing_folder_as_out_is_refused",
        OP + "test_an_unwritable_output_folder_fails_before_scoring",
        "tests/unit/test_outputs.py::test_the_writer_never_replaces_a_fifo_and_replaces_a_symlink_not_its_target",
    ],
    "dataset-pair-whole": [
        OP + "test_a_killed_gen_leaves_the_old_pair_or_the_new_one",
        "tests/unit/test_outputs.py::test_a_kill_at_every_rename_or_removal_leaves_the_old_pair_or_the_new_one",
        "tests/unit/test_outputs.py::test_stale_temps_of_dead_writers_go_and_live_ones_stay",
        ID + "test_kd_mix.py::test_kill_and_resume_loses_and_duplicates_nothing",
        IE + "test_eval_scale.py::test_sigkill_then_the_same_command_scores_every_item_once",
        "tests/unit/data/test_kd_mix_faults.py::test_a_kill_at_every_rename_or_removal_leaves_the_old_pair_or_the_new_one",
        "tests/unit/data/test_kd_mix_faults.py::test_scratch_folders_of_older_versions_go_on_the_next_run",
    ],
    "killed-anywhere": [
        OP + "test_a_killed_gen_leaves_the_old_pair_or_the_new_one",
        KA + "test_eval_killed_anywhere",
        KA + "test_kd_mix_killed_anywhere",
        KA + "test_train_killed_anywhere",
    ],
    "docs-run": [
        "tests/integration/test_docs_run.py::test_every_command_of_the_doc_works_as_shown",
        "tests/unit/test_doc_commands.py::test_the_test_named_for_a_command_exists_and_runs_its_stage",
    ],
    "out-of-room-one-line": [
        NR + "test_gen_out_of_room_keeps_the_old_dataset_and_its_fixtures",
        NR + "test_eval_out_of_room_keeps_the_old_results",
        NR + "test_kd_mix_out_of_room_keeps_the_old_pair",
    ],
}

# promise ID -> why no test proves it yet (each is a README promise still to be closed)
GAPS: dict[str, str] = {}


def _readme_ids() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- promises:start -->(.*?)<!-- promises:end -->", text, re.S)
    assert m, "README.md has no marked promise list"
    return re.findall(r"^- `([a-z0-9-]+)`", m.group(1), re.M)


def test_every_readme_promise_has_an_entry_and_nothing_else_does() -> None:
    ids = _readme_ids()
    assert len(ids) == len(set(ids)), "a promise ID is listed twice"
    assert set(ids) == set(PROMISES) | set(GAPS)
    assert not set(PROMISES) & set(GAPS)


def test_every_listed_test_exists() -> None:
    missing = []
    for pid, nodes in PROMISES.items():
        assert nodes, f"{pid}: no test named (list it in GAPS instead)"
        for node in nodes:
            file, _, name = node.partition("::")
            path = ROOT / file
            if not path.is_file() or name.split("[")[0] not in defined_tests(path):
                missing.append(f"{pid}: {node}")
    assert missing == []
