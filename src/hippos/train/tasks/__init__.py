"""The built-in tasks, one module each; ``BUILTIN_TASKS`` in the order ``hippos train -h`` lists them.

=============  =====================================================================================
``delay``      generated delayed pattern recall (no data files): the default run, a small S4D
``smnist``     sequential MNIST, pixel by pixel, L = 784 (S4 arXiv 2111.00396 Table 6)
``psmnist``    the same with one fixed permutation of the 784 steps
``classify``   sequence classification from your own file (.npz, .csv, idx), variable lengths
``forecast``   next-step forecasting of your own series (.csv, .npz), rolled out with the recurrence
``ar``, ``ih`` H3 associative recall and induction head (language models, H3 Table 2)
``charlm``     character-level language model on a text file (Tiny Shakespeare by default)
``fsdd``       spoken digits from raw audio (FSDD); ``audio``: your own folder of WAV files
``listops``,   Long Range Arena at CPU scale (``hippos.train.tasks.lra``): ListOps and Pathfinder
``lra-text``,  generated, IMDB reviews as bytes, grayscale CIFAR (a 4,000-image subset); S4 N 4 /
``pathfinder``, N 64 with BatchNorm, bidirectional, mean pooling; ``hippos lra`` trains the table
``lra-image``
=============  =====================================================================================

The ``Task`` API they implement is ``hippos.train.task``.
"""

from hippos.train.tasks.audio import FsddTask, UserAudioTask
from hippos.train.tasks.classify import ClassifyTask
from hippos.train.tasks.delay import DelayTask
from hippos.train.tasks.forecast import ForecastTask
from hippos.train.tasks.lm import CharLMTask, SyntheticLMTask
from hippos.train.tasks.lra import LRA_TASKS
from hippos.train.tasks.mnist import MnistTask

__all__ = ["BUILTIN_TASKS"]

BUILTIN_TASKS = (
    DelayTask(),
    MnistTask(permuted=False),
    MnistTask(permuted=True),
    ClassifyTask(),
    ForecastTask(),
    SyntheticLMTask("ar"),
    SyntheticLMTask("ih"),
    CharLMTask(),
    FsddTask(),
    UserAudioTask(),
    *LRA_TASKS,
)
