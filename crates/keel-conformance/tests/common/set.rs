//! Set's core as its own fixture wires it — `Controller`, `IntegrationRegistry`,
//! `SetTokenCreator` and an issuance module from `@setprotocol/set-protocol-v2` 0.1.16 — and the
//! calls the Set suites make on it, on Sets and on their components.
#![allow(dead_code)] // each suite uses a part

use super::compound::SET;
use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, artifact};

sol! {
    interface ISetController {
        function initialize(address[] factories, address[] modules, address[] resources, uint256[] resourceIds) external;
        function addFee(address module, uint256 feeType, uint256 newFeePercentage) external;
    }
    interface IIntegrationRegistry {
        function addIntegration(address module, string id, address wrapper) external;
    }
    interface ISetTokenCreator {
        function create(address[] components, int256[] units, address[] modules, address manager, string name, string symbol) external returns (address);
    }
    interface IDebtIssuance {
        function initialize(address setToken, uint256 maxManagerFee, uint256 managerIssueFee, uint256 managerRedeemFee, address feeRecipient, address managerIssuanceHook) external;
        function issue(address setToken, uint256 quantity, address to) external;
        function redeem(address setToken, uint256 quantity, address to) external;
        function updateIssueFee(address setToken, uint256 newIssueFee) external;
        function updateRedeemFee(address setToken, uint256 newRedeemFee) external;
    }
    interface ISetToken {
        function totalSupply() external view returns (uint256);
        function balanceOf(address a) external view returns (uint256);
        function getDefaultPositionRealUnit(address component) external view returns (int256);
        function getExternalPositionRealUnit(address component, address positionModule) external view returns (int256);
    }
    interface IBalance {
        function balanceOf(address a) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// The creation code of a contract of Set's package (`path` below `artifacts/contracts/`).
pub fn set_artifact(path: &str) -> Bytes {
    artifact(&format!("{SET}artifacts/contracts/{path}"))
}

/// Set's controller, integration registry, Set creator and issuance module.
pub struct SetCore {
    pub controller: Address,
    pub registry: Address,
    pub creator: Address,
    pub issuance: Address,
}

impl SetCore {
    /// Deploy the core with the protocol's fee recipient and the issuance module at `issuance`
    /// (an artifact path, `DebtIssuanceModule` or `DebtIssuanceModuleV2`).
    pub fn deploy(c: &mut Chain, fee_recipient: Address, issuance: &str) -> SetCore {
        let mut at = |path: &str, arg: Address| {
            c.deploy(&set_artifact(path), &arg.abi_encode()).unwrap_or_else(|e| panic!("deploy {path}: {e}"))
        };
        let controller = at("protocol/Controller.sol/Controller.json", fee_recipient);
        let registry = at("protocol/IntegrationRegistry.sol/IntegrationRegistry.json", controller);
        let creator = at("protocol/SetTokenCreator.sol/SetTokenCreator.json", controller);
        let issuance = at(issuance, controller);
        SetCore { controller, registry, creator, issuance }
    }

    /// `Controller.initialize` with the creator, the issuance module and `module`, and the
    /// registry; then `module`'s integrations (`DefaultIssuanceModule` is the issuance module).
    pub fn initialize(&self, c: &mut Chain, module: Address, integrations: &[(&str, Address)]) {
        let init = ISetController::initializeCall {
            factories: vec![self.creator],
            modules: vec![self.issuance, module],
            resources: vec![self.registry],
            resourceIds: vec![U256::ZERO],
        };
        c.transact(self.controller, init.abi_encode()).unwrap_or_else(|e| panic!("controller: {e}"));
        let own = [("DefaultIssuanceModule", self.issuance)];
        for (id, wrapper) in own.iter().chain(integrations) {
            let add = IIntegrationRegistry::addIntegrationCall { module, id: (*id).into(), wrapper: *wrapper };
            c.transact(self.registry, add.abi_encode()).unwrap_or_else(|e| panic!("integration {id}: {e}"));
        }
    }
}
