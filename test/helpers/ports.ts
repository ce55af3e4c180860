export { freePort } from '../../scripts/lib/process.js'
