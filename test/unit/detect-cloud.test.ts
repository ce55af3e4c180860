import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { detectCloud } from '../../src/lifecycle/notices/detect-cloud.js'

/** A fake /sys/class/dmi/id; values get the trailing newline sysfs gives them. */
async function dmiDir (t: TestContext, fields: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-dmi-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const [name, value] of Object.entries(fields)) await writeFile(join(dir, name), `${value}\n`)
  return dir
}

// Values as these machines report them.
const MACHINES: Array<[string, Record<string, string>, 'aws' | 'gcp' | 'azure' | undefined]> = [
  ['an EC2 Nitro instance', { sys_vendor: 'Amazon EC2', bios_vendor: 'Amazon EC2', product_name: 'm5.large', chassis_asset_tag: 'Amazon EC2', product_uuid: 'ec2e1916-9099-7caf-fd21-012345abcdef' }, 'aws'],
  ['an EC2 Nitro instance read as a non-root user (no product_uuid)', { sys_vendor: 'Amazon EC2', product_name: 'g5.xlarge' }, 'aws'],
  ['an older EC2 Xen instance', { sys_vendor: 'Xen', product_name: 'HVM domU', bios_vendor: 'Xen', bios_version: '4.11.amazon', product_version: '4.11.amazon' }, 'aws'],
  ['an EC2 Xen instance known by its UUID and serial', { sys_vendor: 'Xen', product_name: 'HVM domU', product_uuid: 'EC2E1916-9099-7CAF-FD21-012345ABCDEF', product_serial: 'ec2e1916-9099-7caf-fd21-012345abcdef' }, 'aws'],
  ['an EC2 instance with a little-endian UUID', { sys_vendor: 'Xen', product_uuid: '45E12AEC-DCD1-B213-94ED-012345ABCDEF', product_serial: '45E12AEC-DCD1-B213-94ED-012345ABCDEF' }, 'aws'],
  ['a GCE instance', { sys_vendor: 'Google', product_name: 'Google Compute Engine', bios_vendor: 'Google', chassis_asset_tag: '' }, 'gcp'],
  ['a GCE instance with another product name', { sys_vendor: 'Google', product_name: 'n2-standard-4' }, 'gcp'],
  ['an Azure VM', { sys_vendor: 'Microsoft Corporation', product_name: 'Virtual Machine', chassis_asset_tag: '7783-7084-3265-9085-8269-3286-77', bios_vendor: 'Microsoft Corporation' }, 'azure'],
  ['a Hyper-V guest on a workstation', { sys_vendor: 'Microsoft Corporation', product_name: 'Virtual Machine', chassis_asset_tag: '0000-0000-0000-0000-0000-0000-00' }, undefined],
  ['a QEMU/KVM guest', { sys_vendor: 'QEMU', product_name: 'Standard PC (Q35 + ICH9, 2009)', bios_vendor: 'SeaBIOS', product_uuid: 'ec2a0000-1111-2222-3333-444455556666', product_serial: '' }, undefined],
  ['a laptop', { sys_vendor: 'LENOVO', product_name: '20XW0055GE', bios_vendor: 'LENOVO', chassis_asset_tag: 'No Asset Information' }, undefined],
  ['a machine with empty DMI files', { sys_vendor: '', product_name: '' }, undefined]
]

describe('cloud detection from DMI/SMBIOS data', () => {
  for (const [machine, fields, cloud] of MACHINES) {
    test(`${machine} is ${cloud ?? 'no cloud'}`, async (t) => {
      assert.equal(detectCloud(await dmiDir(t, fields)), cloud)
    })
  }

  test('a machine without /sys/class/dmi/id is no cloud', () => {
    assert.equal(detectCloud(join(tmpdir(), 'spotgate-no-such-dmi-dir')), undefined)
  })

  test('unreadable fields count as missing, not as an error', async (t) => {
    // A directory where a file is expected fails the read the way a root-only file does.
    const dir = await dmiDir(t, { sys_vendor: 'Google' })
    await mkdir(join(dir, 'product_uuid'))
    await mkdir(join(dir, 'chassis_asset_tag'))
    assert.equal(detectCloud(dir), 'gcp')
  })
})
