export { writeImageArchive, DEFAULT_MAX_LAYERS, REPRODUCIBLE_CREATED, type ImageArchive, type ImageConfig } from './archive.js';
export { DATA_DIR, HTTP_PROBE_PATH, IMAGE_USER, httpProbeCommand } from './base-layer.js';
export { ImageError, formatImageReference, loadImage, parseImageReference, pushImage, removeImage, type ImageReference } from './docker.js';
