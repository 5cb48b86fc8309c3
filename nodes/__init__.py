"""ComfyUI node classes of the pack, one module per feature. Each module lists its nodes in NODES."""
from . import (
    codec_nodes,
    compare_nodes,
    cut_nodes,
    decode_nodes,
    feature_cache_nodes,
    loop_analysis_nodes,
    loop_nodes,
    video_nodes,
)

ALL_NODES = [
    *cut_nodes.NODES,
    *loop_nodes.NODES,
    *codec_nodes.NODES,
    *loop_analysis_nodes.NODES,
    *video_nodes.NODES,
    *compare_nodes.NODES,
    *decode_nodes.NODES,
    *feature_cache_nodes.NODES,
]
