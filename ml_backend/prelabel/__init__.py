"""Pre-labeling without a person opening the task: the import webhook (``webhook``), the persistent queue (``jobqueue``), its worker threads (``worker``) and the bulk CLI (``preannotate``)."""
