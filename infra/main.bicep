// stigwatch on Azure Functions (Flex Consumption), deployed into one resource group.
//
// Every connection is identity-based: the app, the Functions host and the deployment
// all use one user-assigned managed identity, the storage account refuses shared keys,
// and the secrets (webhook URLs, the webhook signing key, an agent client secret) live
// in Key Vault and reach the app only as Key Vault references. infra/README.md says how
// to deploy this and what stays a manual step.
//
// Names the code depends on (queues, tables, app settings) are checked against the
// Python source by tests/test_infra.py, so keep them in the variables below.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------

@description('Region of every resource. It must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
param location string = resourceGroup().location

@description('Start of every resource name (lower-case letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'stigwatch'

@description('Tags put on every resource.')
param tags object = {}

@description('AZURE_CLOUD for the app (Entra authority and Resource Manager endpoint). Empty: the cloud this deployment runs in.')
@allowed([
  ''
  'public'
  'usgovernment'
  'china'
])
param azureCloud string = ''

@description('SCAN_SCHEDULE: six-field NCRONTAB, UTC. Each firing plans one scan of every inventory target.')
param scanSchedule string = '0 0 */6 * * *'

@description('WATCHDOG_SCHEDULE: six-field NCRONTAB, UTC. The watchdog alerts when scans or targets go quiet.')
param watchdogSchedule string = '0 30 * * * *'

@description('Name of the inventory blob in the inventory container.')
param inventoryBlobName string = 'inventory.json'

@description('Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances Flex Consumption may scale the app out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Post alerts to a Teams Workflows webhook. Its URL is the Key Vault secret teams-webhook-url.')
param teamsAlerts bool = false

@description('Post alerts to a Slack incoming webhook. Its URL is the Key Vault secret slack-webhook-url.')
param slackAlerts bool = false

@description('Post signed alerts to a JSON webhook: Key Vault secrets alert-webhook-url and alert-webhook-secret.')
param webhookAlerts bool = false

@description('ALERT_LINK_URL: an https link shown on each alert (your findings API or dashboard). Not a secret.')
param alertLinkUrl string = ''

@description('Client id of the app registration that gets tokens for HTTPS agents (auth clientSecret). Empty: none.')
param agentClientId string = ''

@description('Tenant of that app registration. Empty: this deployment\'s tenant.')
param agentTenantId string = ''

@description('AGENT_CLIENT_SECRET from the Key Vault secret agent-client-secret (needs agentClientId).')
param agentClientSecret bool = false

@description('Resource group of the Arc-enabled Exchange servers (collector arc). Empty: no Arc access is granted.')
param arcResourceGroupName string = ''

@description('Subscription of that resource group.')
param arcSubscriptionId string = subscription().subscriptionId

@description('Role on the Arc resource group: custom (machines read, run commands read/write/delete) or builtin (Azure Connected Machine Resource Administrator).')
@allowed([
  'custom'
  'builtin'
])
param arcRole string = 'custom'

@description('Create the arc-output container and let the app sign user delegation SAS for Arc run command output blobs.')
param arcOutputBlobs bool = false

@description('More app settings, name to value, for tuning (AGENT_TIMEOUT_SECONDS, ALERT_DIGEST_THRESHOLD, ...). Never put a secret here: use a Key Vault reference.')
param extraAppSettings object = {}

// ---------------------------------------------------------------------------------
// Names the code uses: queues (shared/queueing.py, shared/alerts/notify.py), tables
// (shared/store.py TableNames, shared/alerts/notify.py), Key Vault secret names.
// ---------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, namePrefix)
var queueNames = [
  'scan-targets'
  'scan-targets-poison'
  'alerts'
  'alerts-poison'
]
var tableNames = [
  'findings'
  'findinghistory'
  'scans'
  'alertdeliveries'
]
var deploymentContainerName = 'app-package'
var inventoryContainerName = 'inventory'
var arcOutputContainerName = 'arc-output'
var secretNames = {
  teamsWebhookUrl: 'teams-webhook-url'
  slackWebhookUrl: 'slack-webhook-url'
  alertWebhookUrl: 'alert-webhook-url'
  alertWebhookSecret: 'alert-webhook-secret'
  agentClientSecret: 'agent-client-secret'
}

// environment().name is AzureCloud, AzureUSGovernment or AzureChinaCloud; an unknown
// cloud fails the deployment here rather than pointing the app at the wrong authority.
var cloudByEnvironment = {
  AzureCloud: 'public'
  AzureUSGovernment: 'usgovernment'
  AzureChinaCloud: 'china'
}
var appCloud = empty(azureCloud) ? cloudByEnvironment[environment().name] : azureCloud

// Built-in role definition ids (the same in every tenant and cloud).
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-${suffix}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------
// Storage: the host's state, the deployment package, the inventory, queues, tables
// ---------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${suffix}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // Entra ID only: no account keys, so no connection string can work anywhere.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Flex Consumption without a virtual network, and Arc machines writing output
    // blobs, reach the account over its public endpoint (still Entra ID only).
    publicNetworkAccess: 'Enabled'
    accessTier: 'Hot'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource inventoryContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: inventoryContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource arcOutputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (arcOutputBlobs) {
  parent: blobService
  name: arcOutputContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The collector deletes each output blob after reading it; this only sweeps up after
// a run that died half-way.
resource arcOutputLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (arcOutputBlobs) {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-stale-arc-output'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
                'appendBlob'
              ]
              prefixMatch: [
                '${arcOutputContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 1
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

// Blob Data Owner: the host's leases and the deployment package; the app reads the
// inventory and reads and deletes Arc output blobs.
resource storageBlobOwnerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roleIds.storageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roleIds.storageQueueDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageTableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roleIds.storageTableDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Arc run commands cannot write blobs with a managed identity yet, so the collector
// hands each run a user delegation SAS; signing one needs Blob Delegator.
resource storageBlobDelegatorRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (arcOutputBlobs) {
  scope: storage
  name: guid(storage.id, identity.id, roleIds.storageBlobDelegator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDelegator)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------
// Key Vault: the secrets, set by hand after deployment (infra/README.md)
// ---------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${suffix}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource vaultSecretsUserRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, identity.id, roleIds.keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------
// Monitoring: Application Insights on a Log Analytics workspace, Entra ID ingestion
// ---------------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${namePrefix}-${suffix}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${namePrefix}-${suffix}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Telemetry is accepted only with an Entra ID token (the app's identity).
    DisableLocalAuth: true
  }
}

resource appInsightsPublisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, identity.id, roleIds.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------
// App settings. Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION and WEBSITE_CONTENT*: the runtime is in functionAppConfig.
// ---------------------------------------------------------------------------------

var vaultSecretUri = '${vault.properties.vaultUri}secrets/'

var hostSettings = [
  // AzureWebJobsStorage as identity-based parts; shared/account.py reads the same.
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  }
]

var scanSettings = [
  {
    name: 'AZURE_CLOUD'
    value: appCloud
  }
  {
    name: 'SCAN_SCHEDULE'
    value: scanSchedule
  }
  {
    name: 'WATCHDOG_SCHEDULE'
    value: watchdogSchedule
  }
  {
    name: 'INVENTORY_BLOB_URL'
    value: '${storage.properties.primaryEndpoints.blob}${inventoryContainerName}/${inventoryBlobName}'
  }
]

var teamsSettings = teamsAlerts ? [
  {
    name: 'TEAMS_WEBHOOK_URL'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretUri}${secretNames.teamsWebhookUrl})'
  }
] : []

var slackSettings = slackAlerts ? [
  {
    name: 'SLACK_WEBHOOK_URL'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretUri}${secretNames.slackWebhookUrl})'
  }
] : []

var webhookSettings = webhookAlerts ? [
  {
    name: 'ALERT_WEBHOOK_URL'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretUri}${secretNames.alertWebhookUrl})'
  }
  {
    name: 'ALERT_WEBHOOK_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretUri}${secretNames.alertWebhookSecret})'
  }
] : []

var alertLinkSettings = empty(alertLinkUrl) ? [] : [
  {
    name: 'ALERT_LINK_URL'
    value: alertLinkUrl
  }
]

var agentSettings = empty(agentClientId) ? [] : [
  {
    name: 'AGENT_CLIENT_ID'
    value: agentClientId
  }
  {
    name: 'AGENT_TENANT_ID'
    value: empty(agentTenantId) ? tenant().tenantId : agentTenantId
  }
]

var agentSecretSettings = agentClientSecret ? [
  {
    name: 'AGENT_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretUri}${secretNames.agentClientSecret})'
  }
] : []

var extraSettings = [
  for extra in items(extraAppSettings): {
    name: extra.key
    value: string(extra.value)
  }
]

// ---------------------------------------------------------------------------------
// The Function app
// ---------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${namePrefix}-${suffix}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: '${namePrefix}-${suffix}'
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity, not a system one.
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: concat(
        hostSettings,
        scanSettings,
        teamsSettings,
        slackSettings,
        webhookSettings,
        alertLinkSettings,
        agentSettings,
        agentSecretSettings,
        extraSettings
      )
    }
  }
  // The host starts as soon as the site exists; let it find its roles in place.
  dependsOn: [
    deploymentContainer
    queues
    tables
    storageBlobOwnerRole
    storageQueueRole
    storageTableRole
    vaultSecretsUserRole
    appInsightsPublisherRole
  ]
}

// ---------------------------------------------------------------------------------
// Arc: run commands on the Exchange servers' resource group, never wider
// ---------------------------------------------------------------------------------

module arcAccess 'modules/arc-access.bicep' = if (!empty(arcResourceGroupName)) {
  name: 'stigwatch-arc-access-${suffix}'
  scope: resourceGroup(arcSubscriptionId, arcResourceGroupName)
  params: {
    principalId: identity.properties.principalId
    role: arcRole
  }
}

// ---------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output storageAccountName string = storage.name
output keyVaultName string = vault.name
output keyVaultUri string = vault.properties.vaultUri
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output inventoryBlobUrl string = '${storage.properties.primaryEndpoints.blob}${inventoryContainerName}/${inventoryBlobName}'
output arcOutputContainerUrl string = arcOutputBlobs ? '${storage.properties.primaryEndpoints.blob}${arcOutputContainerName}' : ''
