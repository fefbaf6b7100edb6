"""Change tracking on its own: selection by fingerprint, what counts as gone, the removal-ratio
refusal, the mode a run takes, and the tracker observing a stream of records and markers. Pure:
no server, no files; records are built by hand and mapped by the real mapping."""
import time

from connector.change_tracking.changes import ChangeDetector
from connector.change_tracking.progress import BackfillProgress
from connector.change_tracking.removals import emptied_listing, gone_entities, removal_refusal
from connector.change_tracking.tracker import CLOCK_SKEW_MS, ChangeTracker, choose_mode
from connector.mapping import urns
from connector.mapping.catalog_entities import MappedEntity, MappingMemory, entities_of
from connector.mapping.common import MappingContext
from connector.mapping.version import MAPPING_VERSION
from connector.source.crawl_records import (
    ExperimentRecord, FullPlan, IncrementalPlan, ModelGroupRecord, ResumePlan, RunGone, RunRecord, PageProgress,
    RunsPageEnd, VersionRecord,
)
from connector.source.mlflow_objects import Experiment, ModelVersion, RegisteredModel, Run
from connector.state.store import PipelineState

CTX = MappingContext()
CONTAINER = "urn:li:container:"
RUN = "urn:li:dataProcessInstance:"
GROUP = "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,"


def entity(urn, fp):
    return MappedEntity(urn, fp, ())


# -- fingerprints ---------------------------------------------------------------------------
def test_an_entity_is_sent_when_its_fingerprint_differs_from_the_catalogs():
    changes = ChangeDetector({"urn:li:container:a": "1", "urn:li:container:b": "2"}, {}, emit_all=False)
    assert changes.should_emit(entity("urn:li:container:a", "1")) is False  # unchanged
    assert changes.should_emit(entity("urn:li:container:b", "3")) is True   # changed
    assert changes.should_emit(entity("urn:li:container:c", "4")) is True   # new
    assert changes.current == {"urn:li:container:a": "1", "urn:li:container:b": "3", "urn:li:container:c": "4"}
    assert changes.seen_listed == {"urn:li:container:a", "urn:li:container:b", "urn:li:container:c"}


def test_a_full_crawl_sends_the_unchanged_too_and_a_version_follows_its_runs_change():
    assert ChangeDetector({"urn:li:container:a": "1"}, {}, emit_all=True).should_emit(
        entity("urn:li:container:a", "1")) is True
    changes = ChangeDetector({RUN + "r": "old", "urn:li:mlModel:v": "same"}, {}, emit_all=False)
    assert changes.should_emit(entity(RUN + "r", "new")) is True
    assert changes.changed_runs == {RUN + "r"}
    assert changes.version_should_emit("urn:li:mlModel:v", "same", RUN + "r") is True   # its run changed
    assert changes.version_should_emit("urn:li:mlModel:v", "same", RUN + "other") is False
    assert RUN + "r" not in changes.seen_listed  # runs are not listed whole


def test_forgetting_a_gone_entity_says_whether_the_catalog_had_it():
    changes = ChangeDetector({}, {RUN + "r": "1"}, emit_all=False)
    assert changes.forget(RUN + "r") is True
    assert changes.forget(RUN + "r") is False
    assert changes.current == {}


# -- removals -------------------------------------------------------------------------------
def test_a_full_crawl_removes_whatever_it_did_not_see():
    previous = {"urn:li:container:a": "1", RUN + "r1": "2", RUN + "r2": "3"}
    current = {"urn:li:container:a": "1", RUN + "r1": "2"}
    assert gone_entities(previous, current, set(), incremental=False, deleted=[]) == [RUN + "r2"]


def test_an_incremental_crawl_removes_only_what_it_lists_whole_and_runs_mlflow_shows_deleted():
    previous = {"urn:li:container:a": "1", "urn:li:container:b": "2", RUN + "r1": "3", RUN + "r2": "4"}
    current = dict(previous)  # an incremental run starts from the checkpoint's view
    seen_listed = {"urn:li:container:a"}
    assert gone_entities(previous, current, seen_listed, incremental=True, deleted=[RUN + "r2"]) == [
        "urn:li:container:b", RUN + "r2"]  # r1 was not read again: not gone


def test_removing_more_than_the_ratio_of_everything_is_refused():
    previous = {f"{RUN}{i}": "x" for i in range(10)}
    current = {f"{RUN}{i}": "x" for i in range(4)}
    removed = sorted(set(previous) - set(current))
    refusal = removal_refusal(removed, previous, current, max_ratio=0.5)
    assert refusal is not None and refusal.startswith("would remove 6 of 10 entities (more than 50%)")
    assert "--allow-mass-removal" in refusal
    assert removal_refusal(removed[:4], previous, {**current, **{u: "x" for u in removed[4:]}}, max_ratio=0.5) is None


def test_removing_most_of_one_kind_is_refused_even_when_the_total_is_small():
    previous = {**{f"{RUN}{i}": "x" for i in range(10)}, **{f"urn:li:dataset:{i}": "x" for i in range(100)}}
    current = {u: "x" for u in previous if not u.startswith(RUN)} | {RUN + "0": "x"}
    removed = sorted(set(previous) - set(current))
    refusal = removal_refusal(removed, previous, current, max_ratio=0.5)
    assert refusal is not None and refusal.startswith("would remove 9 of 10 dataProcessInstance entities")


def test_a_crawl_that_found_as_many_as_before_may_remove_them_all():
    """New URNs for the same entities (a mapping change): not a broken crawl."""
    previous = {f"{RUN}old{i}": "x" for i in range(10)}
    current = {f"{RUN}new{i}": "x" for i in range(10)}
    assert removal_refusal(sorted(previous), previous, current, max_ratio=0.5) is None


def test_an_emptied_listing_is_refused_at_any_size():
    previous = {CONTAINER + "a": "1", CONTAINER + "b": "2", RUN + "r": "3"}
    current = {RUN + "r": "3"}
    message = emptied_listing([CONTAINER + "a", CONTAINER + "b"], previous, current)
    assert message is not None and message.startswith(
        "MLflow listed no experiments while the state knows 2 (would remove 2): a wrong tracking_uri or filter?")
    assert emptied_listing([CONTAINER + "a"], previous, {**current, CONTAINER + "b": "2"}) is None


def test_an_emptied_model_listing_beside_a_full_prompt_listing_is_still_refused():
    """Prompts are mlModelGroups too: a registry whose plain model listing answered nothing while its
    prompts were listed has not been emptied; nor has a prompt listing that answered nothing."""
    models = {GROUP + "churn,PROD)": "a1", GROUP + "fraud,PROD)": "a2"}
    prompts = {GROUP + "qa_prompt,PROD)": "prompt:b1", GROUP + "summary,PROD)": "prompt:b2"}
    previous = {**models, **prompts}
    message = emptied_listing(sorted(models), previous, dict(prompts))
    assert message is not None and message.startswith(
        "MLflow listed no registered models while the state knows 2 (would remove 2): a wrong registry_uri")
    message = emptied_listing(sorted(prompts), previous, dict(models))
    assert message is not None and message.startswith("MLflow listed no prompts while the state knows 2")
    assert emptied_listing([GROUP + "fraud,PROD)"], previous, {**prompts, GROUP + "churn,PROD)": "a1"}) is None


# -- the mode -------------------------------------------------------------------------------
def _checkpointed(config_hash="h", **checkpoint) -> PipelineState:
    now = int(time.time() * 1000)
    return PipelineState(checkpoint={"runs_started_until": now - 1000, **checkpoint}, config_hash=config_hash,
                         mapping_version=MAPPING_VERSION)


def test_the_mode_follows_the_checkpoint_the_settings_and_the_mapping_version():
    state = _checkpointed()
    assert choose_mode(state, True, "h", resume=False) == "incremental"
    assert choose_mode(state, False, "h", resume=False) == "full"  # incremental not asked for
    assert choose_mode(state, True, "other settings", resume=False) == "full"
    assert choose_mode(PipelineState(), True, "h", resume=False) == "full"  # no checkpoint
    older = PipelineState(checkpoint=state.checkpoint, config_hash="h", mapping_version=MAPPING_VERSION - 1)
    assert choose_mode(older, True, "h", resume=False) == "full"
    now = int(time.time() * 1000)
    ahead = _checkpointed(runs_started_until=now + CLOCK_SKEW_MS + 60_000)
    assert choose_mode(ahead, True, "h", resume=False, now_ms=now) == "full"
    unfinished = PipelineState(backfill={"config_hash": "h"})
    assert choose_mode(unfinished, False, "h", resume=True) == "resume"
    assert choose_mode(unfinished, False, "changed", resume=True) == "full"


# -- the tracker observing a stream ---------------------------------------------------------
EXPERIMENT = Experiment("1", "churn")
RUN_1 = Run("r1", "1", params={"lr": "0.1"}, start_time=1_000, status="FINISHED")
MODEL = RegisteredModel("churn_model", last_updated_timestamp=5_000)
VERSION = ModelVersion("churn_model", "1", run_id="r1")


def _records(run=RUN_1, experiment=EXPERIMENT, version=VERSION):
    return [ExperimentRecord(experiment), RunRecord(run, experiment, (version,)),
            ModelGroupRecord(MODEL, (version,)), VersionRecord(version, MODEL, run, is_latest=True)]


def _deliver(tracker: ChangeTracker, records) -> list[str]:
    """What the pipeline does with each record: observe, map when wanted, select."""
    memory = MappingMemory()
    sent = []
    for record in records:
        if not tracker.observe(record):
            continue
        chosen = tracker.select(record, list(entities_of(CTX, record, memory)))
        memory.settle()
        sent += [e.urn for e in chosen]
    return sent


class Listing:
    """What list_mlflow() answers, as far as the plan asks: the experiments and the registry."""

    def __init__(self, *versions):
        self.experiments = [EXPERIMENT]
        self.registry = self
        self.versions = versions

    def all_versions(self):
        return [(MODEL, v) for v in self.versions]

    def latest_version_number(self, name):
        return max(v.version_number for v in self.versions)


def _start(previous: PipelineState, incremental=True) -> ChangeTracker:
    return ChangeTracker.start(previous, incremental, "h", 0, CTX)


def test_a_first_run_sends_everything_and_its_state_knows_every_entity():
    tracker = _start(PipelineState())
    sent = _deliver(tracker, _records())
    run_urn = urns.run_urn("r1")
    version_urn = urns.model_urn("churn_model", "1", "_", "PROD")
    assert tracker.mode == "full"
    assert sent == [urns.experiment_urn("churn"), run_urn, urns.model_group_urn("churn_model", "PROD"), version_urn]
    state = tracker.new_state("run-1")
    assert set(state.fingerprints) == set(sent)
    assert state.checkpoint["runs_started_until"] == 1_000 and state.checkpoint["registry_updated_until"] == 5_000
    assert state.checkpoint["mode"] == "full" and state.experiments == {"1": urns.experiment_urn("churn")}
    assert state.mapping_version == MAPPING_VERSION


def test_an_incremental_run_sends_only_what_changed_and_a_changed_run_brings_its_version():
    first = _start(PipelineState())
    _deliver(first, _records())
    previous = first.new_state("run-1")
    unchanged = _start(previous)
    assert unchanged.mode == "incremental"
    assert _deliver(unchanged, _records()) == []
    changed_run = Run("r1", "1", params={"lr": "0.2"}, start_time=1_000, status="FINISHED")
    again = _start(previous)
    assert _deliver(again, _records(run=changed_run)) == [
        urns.run_urn("r1"), urns.model_urn("churn_model", "1", "_", "PROD")]  # the version shows the run's params


def test_an_incremental_plan_reads_again_the_open_runs_and_the_changed_versions():
    first = _start(PipelineState())
    _deliver(first, _records(run=Run("r1", "1", start_time=1_000, status="RUNNING")))
    previous = first.new_state("run-1")
    assert previous.open_runs == ["r1"]

    listing = Listing(ModelVersion("churn_model", "1", run_id="r1", description="new"),
                      ModelVersion("churn_model", "2", run_id="r2"))
    plan = _start(previous).plan(listing)
    assert isinstance(plan, IncrementalPlan)
    assert plan.refetch_run_ids == frozenset({"r1", "r2"})  # open at the checkpoint; a new version's run
    assert plan.changed_versions == frozenset({("churn_model", "1"), ("churn_model", "2")})
    assert plan.runs_started_since == 1_000 and plan.refetch_experiment_ids == frozenset()


def test_a_full_run_removes_what_it_no_longer_sees_and_says_so_in_proposals():
    first = _start(PipelineState(), incremental=False)
    _deliver(first, _records())
    second = _start(first.new_state("run-1"), incremental=False)
    _deliver(second, [ExperimentRecord(EXPERIMENT)])  # the run and the model are gone
    second.finish_removals()
    gone = sorted([urns.run_urn("r1"), urns.model_group_urn("churn_model", "PROD"),
                   urns.model_urn("churn_model", "1", "_", "PROD")])
    assert second.removals == gone
    assert [(p.entity_urn, p.aspect_name, p.aspect) for p in second.removal_proposals()] == [
        (urn, "status", {"removed": True}) for urn in gone]
    assert second.removal_refused(max_ratio=0.5).startswith("would remove 3 of 4 entities (more than 50%)")
    # at any ratio: the registry answered none of the models the state knows (a wrong registry_uri?)
    assert second.removal_refused(max_ratio=0.9).startswith(
        "MLflow listed no registered models while the state knows 1 (would remove 1)")
    assert set(second.new_state("run-2").fingerprints) == {urns.experiment_urn("churn")}


def test_a_run_mlflow_shows_deleted_is_removed_by_an_incremental_run():
    first = _start(PipelineState())
    _deliver(first, _records())
    tracker = _start(first.new_state("run-1"))
    assert tracker.plan(Listing(VERSION)).changed_versions == frozenset()
    assert _deliver(tracker, [ExperimentRecord(EXPERIMENT), ModelGroupRecord(MODEL, (VERSION,))]) == []
    tracker.observe(RunGone("r1"))
    tracker.finish_removals()
    assert tracker.removals == [urns.run_urn("r1")]
    assert urns.run_urn("r1") not in tracker.new_state("run-2").fingerprints


def test_page_end_markers_move_the_backfill_position_saved_with_the_progress():
    tracker = _start(PipelineState(), incremental=False)
    _deliver(tracker, _records()[:2])
    tracker.observe(RunsPageEnd(PageProgress(("1",), 1_000, ("r1",))))
    saved = tracker.with_progress("run-1")
    assert saved.backfill["progress"] == {"done_experiments": [], "current": {
        "experiment_ids": ["1"], "start_time": 1_000, "ids_at_start_time": ["r1"]}}
    tracker.observe(RunsPageEnd(PageProgress(("1",), None, (), batch_done=True)))
    assert tracker.progress == BackfillProgress(frozenset({"1"}), None)
    resumed = ChangeTracker.start(tracker.with_progress("run-1"), False, "h", 0, CTX, resume=True)
    assert resumed.mode == "resume"
    assert resumed.plan(None) == ResumePlan(done_experiments=frozenset({"1"}))
    assert _deliver(resumed, _records()[:2]) == []  # delivered before the stop: not sent again
    assert isinstance(_start(PipelineState(), incremental=False).plan(None, resumable=True), FullPlan)


def test_removals_are_refused_when_the_state_belongs_to_another_platform_instance():
    first = ChangeTracker.start(PipelineState(), False, "h", 0, MappingContext(platform_instance="east"))
    _deliver(first, _records())
    moved = ChangeTracker.start(first.new_state("run-1"), False, "h", 0, MappingContext(platform_instance="west"))
    moved.finish_removals()
    refusal = moved.removal_refused(max_ratio=1.0)
    assert refusal is not None and refusal.startswith("the state was saved by a run for platform_instance 'east'")


def test_an_old_recipes_state_type_is_accepted_and_said_once_to_be_ignored(tmp_path):
    from connector.config.recipe import parse_recipe
    from connector.report import Report
    from connector.run_parts import RunOptions, run_parts

    def parts(state):
        recipe = parse_recipe({"pipeline_name": "p", "source": {"type": "mlflow", "config": {"tracking_uri": "http://mlflow.invalid"}},
                               "sink": {"type": "file", "config": {"filename": str(tmp_path / "o.json")}},
                               "state": {"path": str(tmp_path / "state.json"), **state}})
        report = Report(pipeline_name="p")
        return run_parts(recipe, report, RunOptions()), report

    old, report = parts({"type": "file"})
    assert old.tracking is not None and old.tracking.store.path == tmp_path / "state.json"
    assert [w["message"] for w in report.warnings if w["title"] == "Recipe"] == [
        "state.type is ignored (kept for old recipes): the state store is chosen by state.backend ('file' here)"]
    _, report = parts({})
    assert [w for w in report.warnings if w["title"] == "Recipe"] == []
