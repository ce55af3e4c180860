import type { Logger } from 'pino'
import type { Config, PreemptionSource } from '../../config.js'
import type { Metrics } from '../../metrics.js'
import { AwsNoticeSource } from './aws.js'
import { AzureNoticeSource } from './azure.js'
import { detectCloud } from './detect-cloud.js'
import { GcpNoticeSource } from './gcp.js'
import type { NoticeSource } from './notice.js'

export type CloudSourcesConfig = Pick<Config, 'preemptionSources' | 'metadataUrls' | 'noticePollIntervalMs' | 'awsRebalanceDrains'>

export interface CloudSourcesDeps {
  readonly log: Logger
  readonly metrics: Pick<Metrics, 'noticeSourceErrors' | 'rebalanceRecommendations'>
  /** Where DMI/SMBIOS data is read for PREEMPTION_SOURCES=auto; default /sys/class/dmi/id. */
  readonly dmiDir?: string
}

/**
 * The cloud notice sources PREEMPTION_SOURCES asks for, not started: for `auto` the
 * one cloud the DMI data names, or none (and so no metadata traffic) on a machine
 * that is no cloud VM.
 */
export function createCloudSources (config: CloudSourcesConfig, deps: CloudSourcesDeps): NoticeSource[] {
  let clouds: readonly PreemptionSource[]
  if (config.preemptionSources === 'auto') {
    const cloud = detectCloud(deps.dmiDir)
    deps.log.info({ cloud: cloud ?? null }, cloud === undefined
      ? 'no cloud recognised from DMI data; cloud notice sources off (signals and admin drain still work)'
      : `recognised ${cloud} from DMI data`)
    clouds = cloud === undefined ? [] : [cloud]
  } else {
    clouds = config.preemptionSources
  }
  return [...new Set(clouds)].map((cloud) => createCloudSource(cloud, config, deps))
}

function createCloudSource (cloud: PreemptionSource, config: CloudSourcesConfig, deps: CloudSourcesDeps): NoticeSource {
  const common = {
    baseUrl: config.metadataUrls[cloud],
    pollIntervalMs: config.noticePollIntervalMs,
    log: deps.log,
    metrics: deps.metrics
  }
  switch (cloud) {
    case 'aws': return new AwsNoticeSource({ ...common, rebalanceDrains: config.awsRebalanceDrains })
    case 'gcp': return new GcpNoticeSource(common)
    case 'azure': return new AzureNoticeSource(common)
  }
}
