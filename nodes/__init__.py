"""ComfyUI node classes of the pack, one module per feature. Each module lists its nodes in NODES."""
from . import vcut_nodes
from . import loop_nodes
from . import codec_nodes
from . import loop_analysis_nodes
from . import video_nodes
from . import decode_nodes
from . import feature_cache_nodes

ALL_NODES = [
    *vcut_nodes.NODES,
    *loop_nodes.NODES,
    *codec_nodes.NODES,
    *loop_analysis_nodes.NODES,
    *video_nodes.NODES,
    *decode_nodes.NODES,
    *feature_cache_nodes.NODES,
]
