"""From a Label Studio JSON export to an ACE-Step 1.5 LoRA dataset.

One song's path: ``export_reader`` (stream tasks, choose the annotation) -> ``results`` (result list to
``SongAnnotation``) -> ``writer`` (stems, atomic writes, state) driven by ``convert``; ``validate`` checks any
dataset folder; ``cli`` holds the click commands.
"""
