# vLLM's official OpenAI-compatible server image plus its `audio` extra (librosa, soundfile), which the official
# image leaves out (licensing) and which Qwen2-Audio's audio inputs need. Keep the two versions equal.
ARG VLLM_VERSION=0.11.0
FROM vllm/vllm-openai:v${VLLM_VERSION}
ARG VLLM_VERSION
RUN uv pip install --system "vllm[audio]==${VLLM_VERSION}"
