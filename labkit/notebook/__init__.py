"""What a student sees in a notebook: widgets, tables and charts, progress, the lab's files.

    display.py   tables, charts and one-sentence errors as a notebook shows them
    progress.py  the step-by-step progress display, and the markers VMs print
    widgets.py   the set-up form and the other ipywidgets of the lab
    checks.py    ``check_environment``: is this machine ready for the lab?
    show.py      ``show_file``, ``cloud_init``: the lab's files, highlighted
"""
