variable "subscription_id" {
  description = "Azure subscription to deploy into (azurerm 4.x needs one); null = the ARM_SUBSCRIPTION_ID environment variable."
  type        = string
  default     = null
}

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

variable "memory_budget_mb" {
  description = <<-EOT
    Memory the requests in flight on one instance may hold at once (the app's MEMORY_BUDGET_MB, MiB):
    each request reserves its endpoint's peak (a + b x megapixels, README "Limits") before decoding
    and waits, or gets 503 server_busy, when it does not fit. null = instance_memory_mb less the
    app's resting size (350 MiB). Plan time checks that http_concurrency requests at the limits fit
    the instance.
  EOT
  type        = number
  default     = null
  validation {
    condition     = var.memory_budget_mb == null || var.memory_budget_mb >= 64
    error_message = "memory_budget_mb: null, or at least 64 (MiB)."
  }
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
  description = <<-EOT
    Flex Consumption instance size: 2048 (about 1 vCPU, the default) or 4096 (about 2 vCPU); Microsoft's
    docs also list 512, which the service has been reported to refuse (azure-rest-api-specs issue 40898)
    and which leaves little room for a Python worker holding OpenCV, numpy and the gRPC client.
  EOT
  type        = number
  default     = 2048
  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "maximum_instance_count" {
  description = <<-EOT
    Scale-out ceiling of the Function App. Size it with python -m scripts.capacity. Flex Consumption
    takes 1..1000 where Microsoft has enabled maxima below 40 (a preview in some regions; elsewhere
    the lowest is 40), and azurerm takes 1..1000 from the release of its PR 31392 (40..1000 before,
    so an older lock file refuses a value below 40 at plan time). The region's Flex quota caps
    maximum_instance_count x instance_memory_mb at 512,000 MB per subscription, shared by every Flex
    app there (checked at plan time for this app alone).
  EOT
  type        = number
  default     = 100
  validation {
    condition     = var.maximum_instance_count >= 1 && var.maximum_instance_count <= 1000
    error_message = "Flex Consumption allows 1..1000 instances."
  }
}

variable "http_concurrency" {
  description = <<-EOT
    Flex Consumption's per-instance HTTP concurrency: requests sent to one instance before the
    platform adds another; PYTHON_THREADPOOL_THREAD_COUNT follows it (main.tf says why). The handlers
    are synchronous and CPU-bound between model-server calls, so about 1 + (inference time / app CPU
    time) requests keep one vCPU busy: with bench/capacity.json that is 2-3 for pose and detection,
    about 9 for colorization and more for multi-line handwriting; 4 for a mixed load on a 2048 MB
    instance (about 1 vCPU), 8 on 4096 MB. scripts/capacity.py plans with the same figure.
  EOT
  type        = number
  default     = 4
  validation {
    condition     = var.http_concurrency >= 1 && var.http_concurrency <= 1000
    error_message = "http_concurrency: 1..1000 (the provider's range)."
  }
}

variable "always_ready_instances" {
  description = "Always-ready instances of the HTTP group (0 = scale to zero, cold starts on the first request)."
  type        = number
  default     = 0
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

variable "vnet_address_space" {
  description = "Address space of the VNet created for the Function App's integration subnet (first /24) and the OVMS Container Apps environment (second /24). A /16 by default; pick one that does not overlap networks you peer with."
  type        = string
  default     = "10.60.0.0/16"
  validation {
    condition     = can(cidrsubnet(var.vnet_address_space, 8, 1))
    error_message = "vnet_address_space: a CIDR block of /16 (or larger) so that two /24 subnets fit."
  }
}

variable "ovms_image" {
  description = "OpenVINO Model Server image: the tag scripts/tooling/ovms.py pins (PINNED_TAGS, KServe v2 API) and deploy/k8s runs."
  type        = string
  default     = "openvino/model_server:2026.3"
}

variable "ovms_cpu" {
  description = "vCPUs per OVMS replica: 2, matching INFERENCE_NUM_THREADS 2 of every model in config.json (deploy/k8s/plain/config.json) and the Kubernetes requests; the Consumption profile allows up to 4."
  type        = number
  default     = 2
}

variable "ovms_memory" {
  description = "Memory per OVMS replica: 4Gi holds the four models compiled in f32 with room for colorization's large tensors (the Kubernetes request); Container Apps wants 2 GiB per vCPU on the Consumption profile."
  type        = string
  default     = "4Gi"
}

variable "ovms_min_replicas" {
  description = "OVMS replicas kept running. 1: a cold replica loads every model from Blob before it is ready (tens of seconds), far longer than a request waits for a connection (OVMS_CONNECT_TIMEOUT_SECONDS, then 503), so scale to zero would fail the first requests after a quiet spell. 0 trades that for no idle cost."
  type        = number
  default     = 1
  validation {
    condition     = var.ovms_min_replicas >= 0 && var.ovms_min_replicas <= 300
    error_message = "ovms_min_replicas: 0..300 (the provider's range)."
  }
}

variable "ovms_max_replicas" {
  description = "OVMS replicas at most: 10 replicas x ovms_concurrent_requests in-flight inferences serve about as many Function App instances as maximum_instance_count x http_concurrency sends at a realistic fraction; size it with python -m scripts.capacity."
  type        = number
  default     = 10
  validation {
    condition     = var.ovms_max_replicas >= 1 && var.ovms_max_replicas <= 300
    error_message = "ovms_max_replicas: 1..300 (the provider's range)."
  }
}

variable "ovms_concurrent_requests" {
  description = "Scale rule: concurrent gRPC calls per OVMS replica before Container Apps adds one. 4: one Function App instance's worth (http_concurrency) of inferences; a 2-vCPU replica with the THROUGHPUT hint runs that many at full speed, more only queue inside OVMS where the platform cannot see them."
  type        = number
  default     = 4
  validation {
    condition     = var.ovms_concurrent_requests >= 1
    error_message = "ovms_concurrent_requests: at least 1."
  }
}

variable "ovms_sas_valid_days" {
  description = "Validity of OVMS's read-only SAS (read+list on container ovms). It is renewed on the first terraform apply after ovms_sas_rotate_days; run apply at least that often, or OVMS cannot load models on new replicas once it expires."
  type        = number
  default     = 90
}

variable "ovms_sas_rotate_days" {
  description = "Age at which the next terraform apply signs a new OVMS SAS (before ovms_sas_valid_days runs out)."
  type        = number
  default     = 60
  validation {
    condition     = var.ovms_sas_rotate_days >= 1
    error_message = "ovms_sas_rotate_days: at least 1."
  }
}
