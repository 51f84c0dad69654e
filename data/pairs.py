"""RGB + optical flow pairs: an RGB dataset and a flow dataset (`data.prepare --modality=flow`)
of the same videos, read together, video by video, for the two-stream models.

`data.prepare` deals videos to shards by their ids alone, so two preparations of the same source
with the same `--examples_per_shard` hold each video in the same shard at the same place. The
pairs are read shard by shard; a flow shard's videos the RGB shard lacks (skipped there) are
passed over. Everything is checked here first, from the statistics beside each shard, so a
mismatch is one clear error naming the video rather than misaligned clips.
"""

import json
import pathlib

from data import records


def _shard_videos(data_dir, info, split):
    """Per shard of `split`, `{media_id: (frames, height, width)}` from its statistics file."""
    shards = []
    for name in info["splits"][split]["files"]:
        stats = json.loads((pathlib.Path(data_dir) / name).with_suffix(".json").read_text())
        shards.append({video["media_id"]: (video["frames"], video["height"], video["width"])
                       for video in stats["videos"]})
    return shards


def paired_shards(data_dir, flow_data_dir, split):
    """`(info, rgb_files, flow_files, media_ids)`: the RGB dataset's info, the shard paths of both
    (pairwise) and the ids of the RGB split's videos, all of which the flow shards hold.

    Raises `records.DatasetError` naming the folder and the problem: not RGB / not flow, another
    dataset or classes, other fps or frame size, other sharding, or a video of the RGB split the
    flow split lacks or holds with another frame count or size.
    """
    info, flow_info = records.load_info(data_dir, split), records.load_info(flow_data_dir, split)
    if info.get("modality", "rgb") != "rgb":
        raise records.DatasetError(f"{data_dir}: holds {info['modality']}, not RGB frames (the RGB half of a pair)")
    if flow_info.get("modality") != "flow":
        raise records.DatasetError(f"{flow_data_dir}: holds {flow_info.get('modality', 'rgb')}, not optical flow "
                                   "(prepare it with data.prepare --modality=flow)")
    for key, what in (("dataset", "dataset"), ("class_names", "classes"), ("fps", "frame rate (--fps)")):
        if info.get(key) != flow_info.get(key):
            raise records.DatasetError(f"{flow_data_dir}: another {what} than {data_dir} ({flow_info.get(key)!r:.80} "
                                       f"vs {info.get(key)!r:.80}); prepare both from the same videos alike")
    rgb_shards, flow_shards = _shard_videos(data_dir, info, split), _shard_videos(flow_data_dir, flow_info, split)
    flow_index = {media_id: (shard, facts) for shard, videos in enumerate(flow_shards) for media_id, facts in videos.items()}
    for shard, videos in enumerate(rgb_shards):
        for media_id, facts in videos.items():
            if media_id not in flow_index:
                raise records.DatasetError(f"{flow_data_dir}: split {split!r} lacks video {media_id!r} of {data_dir} "
                                           "(see its skipped.json; prepare the flow of every video)")
            flow_shard, flow_facts = flow_index[media_id]
            if flow_shard != shard or len(rgb_shards) != len(flow_shards):
                raise records.DatasetError(f"{flow_data_dir}: sharded unlike {data_dir} (video {media_id!r}); prepare "
                                           "both with the same --examples_per_shard")
            if flow_facts != facts:
                raise records.DatasetError(
                    f"{flow_data_dir}: video {media_id!r} has {flow_facts[0]} frames of {flow_facts[1]}x{flow_facts[2]}"
                    f" there and {facts[0]} of {facts[1]}x{facts[2]} in {data_dir}; prepare both with the same "
                    "--fps and --short_side")
    media_ids = [media_id for videos in rgb_shards for media_id in videos]
    return (info, records.shard_files(data_dir, info, split), records.shard_files(flow_data_dir, flow_info, split),
            media_ids)
