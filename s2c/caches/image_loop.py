"""The image loop of the cache jobs: decode ahead in threads, compute batch by batch."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm import tqdm

from s2c.datasets.paths import DatasetPaths
from s2c.utils.image_io import read_rgb_image


def prefetch_images(names: Sequence[str], paths: DatasetPaths, workers: int, depth: int,
                    transform: Callable[[str, np.ndarray], np.ndarray] | None = None
                    ) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Yield ``(name, image or None, error or None)`` in order, decoding ahead in threads."""
    def read(name: str) -> np.ndarray:
        image = read_rgb_image(paths.image_path(name))
        return image if transform is None else transform(name, image)

    if workers <= 0:
        for name in names:
            try:
                image = read(name)
            except Exception as exc:  # any unreadable image is a failed entry, not a crash
                yield name, None, str(exc)
            else:
                yield name, image, None
        return
    queue: deque[tuple[str, Future]] = deque()
    it = iter(names)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        def fill() -> None:
            while len(queue) < depth:
                try:
                    n = next(it)
                except StopIteration:
                    return
                queue.append((n, pool.submit(read, n)))

        fill()
        while queue:
            name, fut = queue.popleft()
            fill()
            try:
                image = fut.result()
            except Exception as exc:  # any unreadable image is a failed entry, not a crash
                yield name, None, str(exc)
            else:
                yield name, image, None


def compute_images(todo: Sequence[str], paths: DatasetPaths, num_workers: int,
                   compute: Callable[[list[tuple[str, np.ndarray]]], list[tuple[str, Any]]],
                   record: Callable[[str, Any], bool], fail: Callable[[str, str, str], None],
                   *, batch_size: int = 1,
                   transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
                   desc: str = '', bar_kw: dict | None = None) -> None:
    """Decode the images of ``todo`` ahead in threads and compute them batch by batch.

    Args:
        todo: Image ids, in order.
        paths: Where the images are.
        num_workers: Image-decoding threads (0: decode inline).
        compute: ``[(name, RGB image)] -> [(name, result)]``; writes the entries.
        record: Called with each ``(name, result)``; returns whether it succeeded
            (for the progress bar).
        fail: ``(name, message, reason)``: an unreadable image (reason ``'bad_image'``)
            or a ``compute`` call that raised (``'error'``, every image of the batch).
        batch_size: Images per ``compute`` call.
        transform: ``(name, image) -> image`` applied after decoding, or ``None``.
        desc: Progress-bar label.
        bar_kw: Further tqdm options.
    """
    bar = tqdm(total=len(todo), desc=desc, **(bar_kw or {}))
    batch: list[tuple[str, np.ndarray]] = []
    counts = dict(done=0, failed=0)

    def flush() -> None:
        if not batch:
            return
        try:
            results = compute(batch)
        except Exception as exc:  # a whole-batch failure (e.g. out of memory)
            for name, _ in batch:
                fail(name, f'{type(exc).__name__}: {exc}', 'error')
            counts['failed'] += len(batch)
        else:
            for name, result in results:
                counts['done' if record(name, result) else 'failed'] += 1
        bar.set_postfix(refresh=False, **counts)
        bar.update(len(batch))
        batch.clear()

    try:
        depth = max(4, 2 * batch_size)
        for name, image, err in prefetch_images(todo, paths, num_workers, depth, transform):
            if err is not None:
                fail(name, err, 'bad_image')
                counts['failed'] += 1
                bar.update(1)
                continue
            batch.append((name, image))
            if len(batch) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
