from pathlib import Path

import click


@click.command("grade")
@click.argument("submissions", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full report to this .html or .csv file.")
@click.option("--answers", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The answer key folder (default: the lab repository's answers/).")
@click.option("--notebooks", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The released notebooks, to tell unchanged answers (default: the repository's notebooks/).")
def command(submissions: tuple[Path, ...], out: Path | None, answers: Path | None, notebooks: Path | None) -> None:
    """Collect the written answers from students' notebooks into a report, with each question's reference answer.

    SUBMISSIONS are folders of .ipynb files (STUDENT_01-single-server.ipynb,
    STUDENT/01-single-server.ipynb, or nbgrader's
    submitted/STUDENT/ASSIGNMENT/01-single-server.ipynb) or single notebooks.
    Corrupt notebooks and other labs' notebooks are lines in the report, not
    errors. Answers the same as another student's, short for their points, or
    typed below the answer cell are flagged.
    """
    if out is not None and out.suffix.lower() not in {".html", ".csv"}:
        raise click.BadParameter("name a .html or a .csv file", param_hint="--out")
    from .. import grading

    report = grading.grade(*submissions, answers=answers, notebooks=notebooks)
    click.echo(report.summary())
    if out is not None:
        click.echo(f"Wrote {report.write(out)}.")
