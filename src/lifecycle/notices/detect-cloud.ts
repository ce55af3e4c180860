import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PreemptionSource } from '../../config.js'

export const DMI_DIR = '/sys/class/dmi/id'

// Azure sets this chassis asset tag on every VM; it is what cloud-init's ds-identify
// checks. "Microsoft Corporation" / "Virtual Machine" alone is any Hyper-V guest,
// a developer's laptop included, so it is not enough.
const AZURE_CHASSIS_ASSET_TAG = '7783-7084-3265-9085-8269-3286-77'

/**
 * Which cloud this machine is a VM of, from its DMI/SMBIOS data (as cloud-init's
 * ds-identify tells it, with no network probe), or undefined for none. Missing or
 * unreadable files count as no match: product_uuid and product_serial are readable
 * by root only, so the world-readable fields come first.
 */
export function detectCloud (dmiDir: string = DMI_DIR): PreemptionSource | undefined {
  const field = (name: string) => readDmiField(dmiDir, name)
  if (field('chassis_asset_tag') === AZURE_CHASSIS_ASSET_TAG) return 'azure'
  if (field('product_name') === 'Google Compute Engine' || field('sys_vendor') === 'Google' ||
    field('bios_vendor') === 'Google' || field('product_serial').startsWith('GoogleCloud-')) return 'gcp'
  if (isEc2(field)) return 'aws'
  return undefined
}

function isEc2 (field: (name: string) => string): boolean {
  // Nitro instances name themselves; older Xen ones carry "amazon" in their BIOS version (e.g. 4.11.amazon).
  if (['sys_vendor', 'bios_vendor', 'board_vendor', 'chassis_vendor', 'chassis_asset_tag', 'product_version']
    .some((name) => field(name).includes('Amazon EC2'))) return true
  if (/\bamazon\b/i.test(field('bios_version')) || /\bamazon\b/i.test(field('product_version'))) return true
  // AWS UUIDs start with ec2, in either byte order of the first field; a random UUID
  // does so one time in 4096, hence ds-identify's extra check that the serial matches.
  const uuid = field('product_uuid').toLowerCase()
  return startsWithEc2(uuid) && field('product_serial').toLowerCase() === uuid
}

function startsWithEc2 (uuid: string): boolean {
  if (uuid.startsWith('ec2')) return true
  const first = uuid.split('-')[0] ?? ''
  if (!/^[0-9a-f]{8}$/.test(first)) return false
  const swapped = first.match(/../g)?.reverse().join('') ?? ''
  return swapped.startsWith('ec2')
}

/** The first line of a DMI field, trimmed; '' when the file is missing or unreadable. */
function readDmiField (dmiDir: string, name: string): string {
  try {
    return readFileSync(join(dmiDir, name), 'utf8').split('\n', 1)[0]?.trim() ?? ''
  } catch {
    return ''
  }
}
