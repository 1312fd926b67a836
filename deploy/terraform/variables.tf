variable "resource_group_name" {
  description = "Resource group that holds everything (created)."
  type        = string
}

variable "location" {
  description = "Azure region with Flex Consumption support (az functionapp list-flexconsumption-locations)."
  type        = string
}

variable "name_prefix" {
  description = "Lower-case prefix of resource names (3-11 letters/digits; the storage account name is derived from it)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,10}$", var.name_prefix))
    error_message = "name_prefix: 3-11 lower-case letters or digits, starting with a letter."
  }
}

variable "frontend_origins" {
  description = "Origins allowed by CORS: the OVaaS web frontend (e.g. https://ovaas.example.org). No '*'."
  type        = list(string)
  validation {
    condition     = length(var.frontend_origins) > 0 && !contains(var.frontend_origins, "*")
    error_message = "List the frontend origin(s) explicitly; '*' is not allowed."
  }
}

variable "ovms_hosts" {
  description = <<-EOT
    Model-server gRPC address per endpoint settings prefix (HUMANPOSE, HANDWRITTEN, COLORIZATION,
    OBJECTDETECTION): the private IP or DNS name of the OVMS Service reachable from the Function App's
    virtual network (see deploy/k8s and README "Deploying at scale").
  EOT
  type        = map(string)
  validation {
    condition = alltrue([for p in ["HUMANPOSE", "HANDWRITTEN", "COLORIZATION", "OBJECTDETECTION"] :
    contains(keys(var.ovms_hosts), p)])
    error_message = "ovms_hosts needs HUMANPOSE, HANDWRITTEN, COLORIZATION and OBJECTDETECTION."
  }
}

variable "ovms_port" {
  description = "OVMS gRPC port (KServe v2). 9000 in deploy/k8s, the app's default."
  type        = number
  default     = 9000
}

variable "model_names" {
  description = "Model name on the server per settings prefix (the names in models/config.json and the InferenceServices)."
  type        = map(string)
  default = {
    HUMANPOSE       = "human-pose-estimation"
    HANDWRITTEN     = "handwritten-japanese-recognition"
    COLORIZATION    = "colorization"
    OBJECTDETECTION = "object-detection"
  }
}

variable "model_version" {
  description = "Model version the app asks for: a number, or \"latest\"."
  type        = string
  default     = "latest"
}

variable "ovms_timeout_seconds" {
  description = "Deadline of one inference call (OVMS_TIMEOUT_SECONDS, then 504)."
  type        = number
  default     = 10
}

variable "model_timeout_seconds" {
  description = "Per-endpoint inference deadline (<PREFIX>_TIMEOUT_SECONDS); colorization returns a large tensor."
  type        = map(number)
  default = {
    HUMANPOSE       = 10
    HANDWRITTEN     = 10
    COLORIZATION    = 15
    OBJECTDETECTION = 10
  }
}

variable "ovms_connect_timeout_seconds" {
  description = "How long a request waits for an unconnected model server (then 503)."
  type        = number
  default     = 0.5
}

variable "ovms_metadata_ttl_seconds" {
  description = "How long model metadata is cached per worker."
  type        = number
  default     = 300
}

variable "health_cache_seconds" {
  description = "How long /api/health reuses its answer per worker (0 = never)."
  type        = number
  default     = 5
}

variable "max_body_bytes" {
  description = "Largest request body (413 above)."
  type        = number
  default     = 20971520
}

variable "max_image_pixels" {
  description = "Largest decoded image, in pixels (413 above)."
  type        = number
  default     = 40000000
}

variable "max_image_side" {
  description = "Longest image side, in pixels (413 above)."
  type        = number
  default     = 16384
}

variable "objectdetection_labels_path" {
  description = "Labels file of the detector (az://ovms/object-detection/<file>), or empty for label ids."
  type        = string
  default     = ""
}

variable "handwritten_font_path" {
  description = "Font for the handwriting render (az:// or local path); empty = the bundled Noto Sans JP."
  type        = string
  default     = ""
}

variable "instance_memory_mb" {
  description = "Flex Consumption instance size: 2048 (about 1 vCPU) or 4096 (about 2 vCPU)."
  type        = number
  default     = 2048
  validation {
    condition     = contains([2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 2048 or 4096."
  }
}

variable "maximum_instance_count" {
  description = "Scale-out ceiling of the Function App (Flex Consumption: 40..1000). Size it with python -m scripts.capacity."
  type        = number
  default     = 100
  validation {
    condition     = var.maximum_instance_count >= 40 && var.maximum_instance_count <= 1000
    error_message = "Flex Consumption allows 40..1000 instances."
  }
}

variable "always_ready_instances" {
  description = "Always-ready instances of the HTTP group (0 = scale to zero, cold starts on the first request)."
  type        = number
  default     = 0
}

variable "worker_process_count" {
  description = <<-EOT
    FUNCTIONS_WORKER_PROCESS_COUNT. The app's own work (decode, pre/post-processing, encode) is
    CPU-bound numpy/OpenCV/Pillow code, so more Python processes than vCPUs only adds memory (each
    worker holds OpenCV, numpy and the gRPC client, roughly 150-200 MB). 1 for 2048 MB (about 1 vCPU),
    2 for 4096 MB (about 2 vCPU).
  EOT
  type        = number
  default     = 1
  validation {
    condition     = var.worker_process_count >= 1 && var.worker_process_count <= 10
    error_message = "worker_process_count: 1..10."
  }
}

variable "python_threadpool_thread_count" {
  description = <<-EOT
    PYTHON_THREADPOOL_THREAD_COUNT. The handlers are synchronous, so each concurrent request holds one
    thread; most of its wall time is spent waiting on the model server (gRPC releases the GIL), while
    OpenCV/numpy release it for the heavy parts. About 1 + (inference time / app CPU time) threads
    keep one vCPU busy; with bench/capacity.json that is 2-3 for pose and detection, about 9 for
    colorization and more for multi-line handwriting: 4 for a mixed load. Match the HTTP
    per-instance concurrency (README "Scaling").
  EOT
  type        = number
  default     = 4
  validation {
    condition     = var.python_threadpool_thread_count >= 1 && var.python_threadpool_thread_count <= 32
    error_message = "python_threadpool_thread_count: 1..32."
  }
}

variable "vnet_integration_subnet_id" {
  description = "Subnet (delegated to Microsoft.App/environments) for outbound calls to OVMS on a private network; null = none."
  type        = string
  default     = null
}

variable "storage_replication_type" {
  description = "Replication of the storage account (models, side files, deployment package)."
  type        = string
  default     = "ZRS"
}

variable "log_retention_days" {
  description = "Log Analytics retention."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = { app = "ovaas-backend" }
}
