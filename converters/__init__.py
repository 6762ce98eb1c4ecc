"""From a Label Studio JSON export to an ACE-Step 1.5 LoRA dataset.

One song's path, driven by ``convert``: ``export_reader`` (stream tasks, choose the annotation) -> ``results``
(result list to ``SongAnnotation``) -> ``stems`` (its file names) -> ``audio_files`` (measure, copy or link the
audio) -> ``json_text`` (sidecar text) -> ``text_plan`` (keep files edited by hand) -> ``state`` (what each run
wrote) -> ``spool`` and ``outputs`` (the run-level files). ``validate`` checks any dataset folder; ``cli`` holds
the click commands.
"""
