"""The tasks a model is trained for (`train.tasks.base.Task`): single-label classification,
multi-label classification and action detection (of RGB, flow or RGB + flow inputs: the input's
modality, which the input protocol and `data.pairs` own, not a task).

A prepared dataset says which task its labels serve (`task` in dataset_info.json); a model family
says which tasks its models can do (`models.registry.Family.tasks`); `for_data` picks the task of a
model on a dataset, and the run records it (`ResolvedConfig.task`), so every command that loads the
run asks the same task. A new task: a module with a `Task` subclass, and a line in `TASKS`.
"""

from train.tasks.base import PredictOptions, Task, TaskError
from train.tasks.classification import Classification
from train.tasks.detection import Detection
from train.tasks.multi_label import MultiLabel

TASKS = {task.name: task for task in (Classification(), MultiLabel(), Detection())}

__all__ = ["TASKS", "PredictOptions", "Task", "TaskError", "get", "for_data"]


def get(name):
    """The task called `name`; TaskError naming the tasks for an unknown one."""
    if name not in TASKS:
        raise TaskError(f"task: unknown task {name!r}; one of {', '.join(TASKS)}")
    return TASKS[name]


def for_data(family, model, info, data_dir):
    """The task of model `model` (of `family`) trained on a prepared dataset (`info`: its
    dataset_info.json): the one of the family's tasks that trains on the dataset's task."""
    wanted = info.get("task", "classification")
    for name in family.tasks:
        if wanted in TASKS[name].data_tasks:
            return TASKS[name]
    raise TaskError(f"{data_dir}: holds the {wanted} dataset {info['dataset']!r}; {model} is a model for "
                    f"{' or '.join(TASKS[name].title for name in family.tasks)}")
