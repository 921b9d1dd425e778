"""Video jobs: records and files (:mod:`.store`), and running them (:mod:`.runner`)."""
